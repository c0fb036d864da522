// The face list under the picture: one row per face with the number its box carries, the
// label, the percentage and a compact 7-bar chart. It is the page's accessible text for what
// the overlay shows (the overlay is aria-hidden), so colour is never the only cue: every row
// says its number and label in words.
import { COLORS, topLabel } from './overlay.js';

/** Plain records for window.ferState.faces, in list order (by number). */
export function describeFaces(faces, labels) {
  return faces.map((f, i) => {
    const probs = f.probs ? Array.from(f.probs) : null;
    return {
      id: f.id ?? null, number: f.number ?? i + 1, box: { ...f.box }, score: f.score ?? f.det?.score ?? null,
      label: probs && labels ? topLabel(f, labels).label : null, probs, lowlight: f.lowlight ?? f.det?.lowlight ?? null,
    };
  });
}

function makeRow(labels) {
  const li = document.createElement('li');
  const num = document.createElement('b');
  num.className = 'face-num';
  num.setAttribute('aria-hidden', 'true'); // the words below say "Face N"
  const who = document.createElement('span');
  who.className = 'sr-only';
  const name = document.createElement('span');
  name.className = 'face-name';
  const pct = document.createElement('span');
  pct.className = 'face-pct';
  const chart = document.createElement('span');
  chart.className = 'face-bars';
  chart.setAttribute('role', 'img');
  for (const l of labels || []) {
    const bar = document.createElement('i');
    bar.style.setProperty('--c', COLORS[l] || '#fff');
    chart.append(bar);
  }
  li.append(num, who, name, pct, chart);
  return li;
}

/**
 * Render `faces` (describeFaces records) into `list`, updating rows in place so a screen
 * reader's position and the layout do not jump at every frame. `summary`: an aria-live element
 * told only when the faces or their labels change, not at every percentage.
 */
export function renderFaceList(list, faces, labels, summary = null) {
  const rows = Array.from(list.children);
  for (const li of rows.slice(faces.length)) li.remove();
  faces.forEach((f, i) => {
    let li = rows[i];
    if (!li || li.dataset.bars !== String(labels ? labels.length : 0)) {
      const fresh = makeRow(labels);
      if (li) li.replaceWith(fresh); else list.append(fresh);
      li = fresh;
      li.dataset.bars = String(labels ? labels.length : 0);
    }
    const [num, who, name, pct, chart] = li.children;
    li.dataset.face = String(f.number);
    li.dataset.label = f.label || '';
    li.style.setProperty('--c', (f.label && COLORS[f.label]) || '#fff');
    num.textContent = String(f.number);
    who.textContent = `Face ${f.number}: `;
    name.textContent = f.label || 'face';
    const top = f.probs ? Math.round(Math.max(...f.probs) * 100) : null;
    pct.textContent = top == null ? '' : `${top}%`;
    chart.hidden = !f.probs;
    if (f.probs) {
      Array.from(chart.children).forEach((bar, k) => { bar.style.height = `${Math.max(4, f.probs[k] * 100)}%`; });
      chart.setAttribute('aria-label', labels.map((l, k) => `${l} ${Math.round(f.probs[k] * 100)}%`).join(', '));
    }
  });
  if (summary) announce(summary, faces.map((f) => `Face ${f.number}: ${f.label || 'face'}`).join('; '));
}

// A live region that changed at every flicker of a label would talk without pause: changes
// are announced at most every ANNOUNCE_MS, the latest one last.
const ANNOUNCE_MS = 2000;
const announcers = new WeakMap(); // element -> {at, timer, text}

function announce(el, text) {
  let a = announcers.get(el);
  if (!a) announcers.set(el, (a = { at: -Infinity, timer: null, text: el.textContent }));
  a.text = text;
  if (a.timer) return;
  const flush = () => {
    a.timer = null;
    if (el.textContent !== a.text) { el.textContent = a.text; a.at = performance.now(); }
  };
  const wait = a.at + ANNOUNCE_MS - performance.now();
  if (wait <= 0) flush(); else a.timer = setTimeout(flush, wait);
}
