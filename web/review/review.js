// The curator's review page: the pending crops with the contributor's label and the shipped
// model's prediction, the most disagreeing first; accept, reject or relabel one or many.
//
// The prediction is computed here, with the page's own classifier.js and the vendored TF.js
// (CPU backend: a few hundred 48x48 crops need no more), because the backend never imports
// TensorFlow; the page thereby shows exactly what the phone would predict, and works offline.
// Every URL is relative: the page lives under /<token>/, so each request carries the token.

import { Ensemble, argmax } from '../js/classifier.js';

const SIZE = 48;
const BATCH = 32;
const TOKEN = decodeURIComponent(location.pathname.split('/')[1] || '');

const $ = (id) => document.getElementById(id);
const state = { labels: [], items: [], focus: 0, selected: new Set(), busy: false };

function message(text, ok = false) {
  const el = $('message');
  el.textContent = text;
  el.classList.toggle('ok', ok);
  el.hidden = !text;
}

function showCounts(counts) {
  const total = (s) => Object.values(counts[s] || {}).reduce((a, b) => a + b, 0);
  $('counts').textContent = `${total('pending')} pending · ${total('accepted')} accepted · ` +
    `${total('rejected')} rejected`;
}

function cards() {
  return [...$('grid').querySelectorAll('.card')];
}

function showSelection() {
  const n = state.selected.size;
  $('selection').textContent = n ? `${n} selected` : '';
  for (const card of cards()) card.setAttribute('aria-selected', String(state.selected.has(card.dataset.id)));
  const none = cards().length === 0;
  for (const id of ['accept', 'reject', 'relabel', 'select-all']) $(id).disabled = none || state.busy;
  $('empty').hidden = !none;
}

function focusCard(i) {
  const list = cards();
  if (!list.length) return;
  state.focus = Math.max(0, Math.min(list.length - 1, i));
  list[state.focus].focus();
}

function card(item) {
  const el = document.createElement('div');
  el.className = 'card';
  el.tabIndex = 0;
  el.setAttribute('role', 'option');
  el.dataset.id = item.id;
  const img = document.createElement('img');
  img.src = `crop/${item.id}`;
  img.alt = `upload labelled ${item.label}`;
  img.decoding = 'async';
  const label = document.createElement('div');
  label.className = 'label';
  label.textContent = item.curator_label ? `${item.label} → ${item.curator_label}` : item.label;
  const pred = document.createElement('div');
  pred.className = 'pred';
  pred.textContent = 'model: …';
  const meta = document.createElement('div');
  meta.className = 'meta';
  meta.textContent = item.holdout ? 'custom holdout (if accepted)' : '';
  el.append(img, label, pred, meta);
  el.addEventListener('click', (ev) => {
    focusCard(cards().indexOf(el));
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) toggle(el.dataset.id);
  });
  item.el = el;
  item.img = img;
  item.predEl = pred;
  return el;
}

function toggle(id) {
  if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
  showSelection();
}

function render() {
  $('grid').replaceChildren(...state.items.map((item) => item.el || card(item)));
  showSelection();
}

/** 48x48 grey levels of a loaded crop, as the model takes them. */
function grey(img) {
  const canvas = document.createElement('canvas');
  canvas.width = SIZE;
  canvas.height = SIZE;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(img, 0, 0, SIZE, SIZE);
  const rgba = ctx.getImageData(0, 0, SIZE, SIZE).data;
  const out = new Uint8Array(SIZE * SIZE);
  for (let i = 0; i < out.length; i++) {
    out[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
  }
  return out;
}

async function predict() {
  const tf = globalThis.tf;
  if (!tf) throw new Error('TF.js did not load');
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await Ensemble.load('models/manifest.json');
  if (model.height !== SIZE || model.width !== SIZE) throw new Error('the model does not take 48x48 faces');
  const labels = model.labels;
  for (let start = 0; start < state.items.length; start += BATCH) {
    const batch = state.items.slice(start, start + BATCH);
    await Promise.all(batch.map((it) => it.img.decode().catch(() => null)));
    const ready = batch.filter((it) => it.img.complete && it.img.naturalWidth > 0);
    const probs = await model.classify(ready.map((it) => grey(it.img)));
    ready.forEach((it, i) => {
      const p = probs[i];
      const top = argmax(p);
      const mine = labels.indexOf(it.curator_label || it.label);
      it.prediction = labels[top];
      it.confidence = p[top];
      // How sure the model is that the label is wrong: 0 when it agrees.
      it.disagreement = mine < 0 ? 1 : p[top] - p[mine];
      it.predEl.textContent = `model: ${labels[top]} ${Math.round(100 * p[top])} %`;
      it.predEl.classList.toggle('disagree', top !== mine);
      it.el.dataset.prediction = labels[top];
      it.el.dataset.disagreement = it.disagreement.toFixed(4);
    });
  }
  model.dispose();
  state.items.sort((a, b) => (b.disagreement ?? -1) - (a.disagreement ?? -1));
  render();
  focusCard(0);
  $('model').textContent = 'Sorted by how strongly the shipped model disagrees with the label.';
  document.body.dataset.model = 'ok';
}

async function act(action, label = null) {
  if (state.busy) return;
  const focused = cards()[state.focus];
  const ids = state.selected.size ? [...state.selected] : focused ? [focused.dataset.id] : [];
  if (!ids.length) return;
  state.busy = true;
  showSelection();
  try {
    const res = await fetch('api/review', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-review-token': TOKEN },
      body: JSON.stringify(label ? { ids, action, label } : { ids, action }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      message(body.detail || `the review failed (HTTP ${res.status}); nothing was changed`);
      return;
    }
    const done = new Set(ids);
    state.items = state.items.filter((it) => !done.has(it.id));
    state.selected.clear();
    render();
    focusCard(state.focus);
    showCounts(body.counts);
    const what = action === 'relabel' ? `accepted as ${label}` : `${action}ed`;
    message(`${body.changed} upload${body.changed === 1 ? '' : 's'} ${what}`, true);
  } catch (err) {
    message(`the review did not reach the server (${err.message}); nothing was changed`);
  } finally {
    state.busy = false;
    showSelection();
  }
}

function columns() {
  const list = cards();
  if (list.length < 2) return 1;
  const top = list[0].offsetTop;
  const n = list.findIndex((c) => c.offsetTop !== top);
  return n < 0 ? list.length : n;
}

function onKey(ev) {
  if (ev.target instanceof HTMLSelectElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const key = ev.key;
  const moves = { ArrowLeft: -1, h: -1, ArrowRight: 1, l: 1, ArrowUp: -columns(), k: -columns(),
    ArrowDown: columns(), j: columns() };
  if (key in moves) focusCard(state.focus + moves[key]);
  else if (key === ' ' || key === 'x') { const c = cards()[state.focus]; if (c) toggle(c.dataset.id); }
  else if (key === '*') { cards().forEach((c) => state.selected.add(c.dataset.id)); showSelection(); }
  else if (key === 'Escape') { state.selected.clear(); showSelection(); }
  else if (key === 'a') act('accept');
  else if (key === 'r') act('reject');
  else if (/^[1-9]$/.test(key) && Number(key) <= state.labels.length) act('relabel', state.labels[Number(key) - 1]);
  else return;
  ev.preventDefault();
}

async function start() {
  const res = await fetch('api/queue?state=pending', { cache: 'no-store' });
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || `HTTP ${res.status}`);
  state.labels = body.labels;
  state.items = body.items;
  $('relabel-label').replaceChildren(...state.labels.map((l, i) => new Option(`${i + 1} ${l}`, l)));
  showCounts(body.counts);
  render();
  focusCard(0);
  $('accept').addEventListener('click', () => act('accept'));
  $('reject').addEventListener('click', () => act('reject'));
  $('relabel').addEventListener('click', () => act('relabel', $('relabel-label').value));
  $('select-all').addEventListener('click', () => { cards().forEach((c) => state.selected.add(c.dataset.id)); showSelection(); });
  document.addEventListener('keydown', onKey);
  try {
    if (state.items.length) await predict();
  } catch (err) {
    $('model').textContent = `No predictions (${err.message}); the crops are in upload order.`;
    document.body.dataset.model = 'none';
  }
  document.body.dataset.state = 'ready';
}

start().catch((err) => {
  message(`The review queue did not load: ${err.message}`);
  document.body.dataset.state = 'error';
});
