// The layer over the video (or the still photo): one box and one tag ("3 happy 92%") per face,
// as DOM elements in CSS pixels. Text sized in CSS pixels stays readable however the picture
// is scaled, and the tags are placed by layout.js so that none is clipped or covers another.
// The probability charts live in the face list (facelist.js), not over the faces.
import { argmax } from './classifier.js';
import { containRect, toView, placeTags } from './layout.js';

export const COLORS = {
  angry: '#ff5252', disgust: '#8bc34a', fear: '#b388ff', happy: '#ffd740',
  sad: '#40c4ff', surprise: '#ff80ab', neutral: '#e0e0e0',
};
export const NO_LABEL_COLOR = '#ffffff';

/** The label, its colour and the rounded percentage of a face ({probs}); `face` without probs. */
export function topLabel(face, labels) {
  if (!face.probs || !labels) return { label: null, color: NO_LABEL_COLOR, pct: null };
  const k = argmax(face.probs);
  return { label: labels[k], color: COLORS[labels[k]] || NO_LABEL_COLOR, pct: Math.round(face.probs[k] * 100) };
}

const layers = new WeakMap(); // layer element -> {last, sides, observer}

function layerState(layer) {
  let st = layers.get(layer);
  if (!st) {
    st = { last: null, sides: new Map(), sizes: new Map() };
    // A rotated phone or a resized window moves the picture: lay the tags out again (the still
    // photo gets no new frame to do it).
    if (typeof ResizeObserver !== 'undefined') {
      st.observer = new ResizeObserver(() => { st.sizes.clear(); if (st.last) paint(layer, st); });
      st.observer.observe(layer);
    }
    layers.set(layer, st);
  }
  return st;
}

/** Reuse the layer's children of one kind (no per-frame churn), creating or dropping some. */
function pool(layer, cls, n, make) {
  const have = Array.from(layer.getElementsByClassName(cls));
  for (const el of have.slice(n)) el.remove();
  while (have.length < n) { const el = make(); layer.append(el); have.push(el); }
  return have.slice(0, n);
}

function makeBox() {
  const el = document.createElement('div');
  el.className = 'face-box';
  return el;
}

function makeTag() {
  const el = document.createElement('div');
  el.className = 'face-tag';
  el.append(document.createElement('b'), document.createElement('span'));
  return el;
}

const px = (v) => `${Math.round(v * 10) / 10}px`;

/**
 * faces: [{box:{x,y,w,h}, probs, number}] in frame pixels (number: the face list's number);
 * labels: label names; width/height: the frame; mirror: shown mirrored (front camera): boxes
 * follow the mirrored picture, text stays readable.
 */
export function drawOverlay(layer, faces, labels, { width, height, mirror = false } = {}) {
  const st = layerState(layer);
  st.last = { faces, labels, width, height, mirror };
  paint(layer, st);
}

function paint(layer, st) {
  const { faces, labels, width, height, mirror } = st.last;
  const n = width && height ? faces.length : 0;
  const boxes = pool(layer, 'face-box', n, makeBox);
  const tags = pool(layer, 'face-tag', n, makeTag);
  if (!n) { st.sides.clear(); return; }
  const rect = containRect(layer.clientWidth, layer.clientHeight, width, height);
  const views = faces.map((f) => toView(f.box, rect, width, mirror));
  faces.forEach((f, i) => {
    const { label, color, pct } = topLabel(f, labels);
    const num = String(f.number ?? i + 1);
    for (const el of [boxes[i], tags[i]]) {
      el.dataset.face = num;
      el.dataset.label = label || '';
      el.style.setProperty('--c', color);
    }
    const v = views[i];
    Object.assign(boxes[i].style, { left: px(v.x), top: px(v.y), width: px(v.w), height: px(v.h) });
    const [b, span] = tags[i].children;
    b.textContent = num;
    span.textContent = label ? `${label} ${pct}%` : '';
    span.hidden = !label;
    tags[i].classList.remove('compact');
    tags[i].hidden = false;
  });
  // One forced layout to measure the tags whose text is new, full and number-only; a tag's size
  // depends on its text alone (until a resize), and measuring every frame cost ~1 ms of each.
  const sizes = tags.map((t) => {
    const [b, span] = t.children;
    const key = `${b.textContent}|${span.hidden ? '' : span.textContent}`;
    let size = st.sizes.get(key);
    if (!size) {
      // Fractional sizes: rounded ones could let two touching tags overlap by a pixel.
      const r = t.getBoundingClientRect();
      const full = { w: r.width, h: r.height };
      const textW = span.hidden ? 0 : span.getBoundingClientRect().right - b.getBoundingClientRect().right;
      size = textW > 0 ? [full, { w: full.w - textW, h: full.h }] : [full];
      if (st.sizes.size > 500) st.sizes.clear();
      st.sizes.set(key, size);
    }
    return size;
  });
  const prefer = faces.map((f, i) => st.sides.get(tags[i].dataset.face));
  const spots = placeTags(views, sizes, rect, { prefer });
  st.sides.clear();
  spots.forEach((s, i) => {
    const t = tags[i];
    t.dataset.side = s.side || 'none';
    if (s.variant < 0) { t.hidden = true; return; }
    st.sides.set(t.dataset.face, s.side);
    t.classList.toggle('compact', s.variant > 0);
    Object.assign(t.style, { left: px(s.x), top: px(s.y) });
  });
}

/** Remove every box and tag. */
export function clearOverlay(layer) {
  drawOverlay(layer, [], null, {});
}
