// Upload page: detect faces in a photo (in the browser), show the aligned crop, send crop + label
// with explicit consent to POST /api/uploads; remember deletion tokens in localStorage.
// Every contribution gets a random Idempotency-Key, saved (PENDING_KEY) before it is sent: when the
// answer is lost (network error, server error), the same form is re-sent once with the same key,
// and pressing Upload again for the same face and label re-sends it too. The server then returns
// the deletion token of the contribution it already stored instead of storing it twice.
import { chooseBackend } from './env.js';
import { FaceDetector } from './detector.js';
import { drawAligned, toGray, grayToCanvas } from './align.js';
import { drawPhoto, PhotoError } from './photo.js';
import { showMessage as showIn, hideMessage } from './message.js';

export const STORE_KEY = 'fer-hybrid.uploads';
export const PENDING_KEY = 'fer-hybrid.pending';
export const CROP_SIZE = 128;

const $ = (id) => document.getElementById(id);
const els = {
  file: $('file'), status: $('status'), preview: $('photo-preview'), cropCard: $('crop-card'), crops: $('crops'),
  form: $('form'), labels: $('labels'), consent: $('consent'), sendOriginal: $('send-original'), submit: $('submit'),
  result: $('result'), uploads: $('uploads'), deleteAll: $('delete-all'), deleteResult: $('delete-result'), message: $('message'),
};
const state = { ready: false, faces: 0, selected: -1, lastUpload: null, error: null };
window.ferUploadState = state;

let detector = null;
let photoFile = null;
let cropCanvases = [];
let pending = null; // { key, sig } of the contribution whose answer has not arrived

export function loadUploads() {
  try { return JSON.parse(localStorage.getItem(STORE_KEY) || '[]'); } catch { return []; }
}
function saveUploads(list) { localStorage.setItem(STORE_KEY, JSON.stringify(list)); renderUploads(); }

function newKey() { // 32 url-safe characters (crypto.randomUUID needs a secure context)
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_');
}
function loadPending() {
  try { return JSON.parse(localStorage.getItem(PENDING_KEY) || '[]'); } catch { return []; }
}
function setPending(key, entry) { // entry null: the outcome is known, forget the key
  const list = loadPending().filter((p) => p.key !== key);
  if (entry) list.push(entry);
  localStorage.setItem(PENDING_KEY, JSON.stringify(list));
}

function renderUploads() {
  const list = loadUploads();
  els.uploads.replaceChildren(...list.map((u) => {
    const li = document.createElement('li');
    li.textContent = `${u.label} — ${new Date(u.at).toLocaleString()}${u.duplicate ? ' (already known)' : ''}`;
    return li;
  }));
  els.deleteAll.disabled = list.length === 0;
}

const showMessage = (title, text, kind) => showIn(els.message, title, text, kind);

function selectedLabel() {
  const r = els.labels.querySelector('input[name="label"]:checked');
  return r ? r.value : null;
}

function refreshSubmit() {
  els.submit.disabled = !(els.consent.checked && selectedLabel() && state.selected >= 0);
}

function selectCrop(i) {
  state.selected = i;
  els.crops.querySelectorAll('button').forEach((b, k) => b.setAttribute('aria-pressed', String(k === i)));
  refreshSubmit();
}

async function handleFile(file) {
  els.result.textContent = '';
  hideMessage(els.message);
  photoFile = file || null;
  pending = null;
  state.selected = -1; state.faces = 0; cropCanvases = [];
  els.crops.replaceChildren();
  els.cropCard.hidden = true;
  refreshSubmit();
  if (!file) return;
  let work;
  try {
    work = await drawPhoto(file);
  } catch (err) {
    if (!(err instanceof PhotoError)) throw err;
    showMessage(err.title, err.message);
    return;
  }
  const w = work.width, h = work.height;
  const pv = els.preview, ps = Math.min(1, 480 / Math.max(w, h));
  pv.width = Math.round(w * ps); pv.height = Math.round(h * ps);
  const pctx = pv.getContext('2d');
  pctx.drawImage(work, 0, 0, pv.width, pv.height);
  if (!detector) { showMessage('Face detector not ready', 'Wait until it has loaded, then choose the photo again.'); return; }
  els.status.textContent = 'Looking for faces…';
  const dets = await detector.detect(work, w, h);
  state.faces = dets.length;
  document.body.dataset.faces = String(dets.length);
  pctx.lineWidth = 3; pctx.strokeStyle = '#ffd740';
  dets.forEach((d) => pctx.strokeRect(d.box.x * ps, d.box.y * ps, d.box.w * ps, d.box.h * ps));
  if (!dets.length) {
    els.status.textContent = 'No face found. Try a photo where the face is larger, frontal and well lit.';
    return;
  }
  els.status.textContent = `${dets.length} face(s) found.`;
  dets.forEach((d, i) => {
    const rgb = drawAligned(work, d, CROP_SIZE);
    const gray = toGray(rgb.getContext('2d').getImageData(0, 0, CROP_SIZE, CROP_SIZE));
    const c = grayToCanvas(gray, CROP_SIZE);
    cropCanvases.push(c);
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('aria-label', `Face ${i + 1}`);
    b.append(c);
    b.addEventListener('click', () => selectCrop(i));
    els.crops.append(b);
  });
  els.cropCard.hidden = false;
  selectCrop(0);
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (typeof body.detail === 'string') return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || JSON.stringify(d)).join('; ');
    return JSON.stringify(body);
  } catch {
    return `HTTP ${res.status} ${res.statusText}`;
  }
}

async function submit(ev) {
  ev.preventDefault();
  const label = selectedLabel();
  if (!els.consent.checked || !label || state.selected < 0) return;
  els.submit.disabled = true;
  els.result.textContent = 'Uploading…';
  const crop = await new Promise((resolve) => cropCanvases[state.selected].toBlob(resolve, 'image/png'));
  const fd = new FormData();
  fd.append('crop', crop, 'crop.png');
  fd.append('label', label);
  fd.append('consent', 'true');
  fd.append('source', els.file.hasAttribute('data-camera') ? 'camera' : 'file');
  const withOriginal = els.sendOriginal.checked && photoFile;
  if (withOriginal) fd.append('original', photoFile, photoFile.name || 'original.jpg');
  // Same face, label and original as an unanswered send: same key, so it cannot be stored twice.
  const sig = `${state.selected}|${label}|${withOriginal ? 1 : 0}`;
  if (!pending || pending.sig !== sig) pending = { key: newKey(), sig };
  const { key } = pending;
  setPending(key, { key, label, at: Date.now() });
  const send = () => fetch('/api/uploads', {
    method: 'POST', body: fd, credentials: 'same-origin', headers: { 'Idempotency-Key': key },
  });
  let res;
  for (let attempt = 1; ; attempt++) {
    let lost = null;
    try {
      res = await send();
      if ([500, 502, 503, 504].includes(res.status)) lost = `HTTP ${res.status}`;
    } catch (err) {
      lost = err.message;
    }
    if (!lost) break;
    if (attempt < 2) continue; // retry once with the same key
    els.result.textContent = '';
    showMessage('Upload not confirmed', `The server did not answer (${lost}). It may have stored the photo: press Upload again to re-send it; it will not be stored twice.`);
    refreshSubmit();
    return;
  }
  pending = null;
  setPending(key, null);
  if (res.status !== 201 && !res.ok) {
    els.result.textContent = '';
    state.error = await errorText(res);
    showMessage(`Upload refused (${res.status})`, state.error);
    refreshSubmit();
    return;
  }
  const body = await res.json();
  state.lastUpload = body;
  const list = loadUploads();
  list.push({ id: body.id, token: body.deletion_token, label: body.label, duplicate: !!body.duplicate, at: Date.now() });
  saveUploads(list);
  els.result.dataset.status = 'ok';
  els.result.textContent = body.duplicate
    ? `Thank you! This crop was already in the dataset (label “${body.label}”).`
    : `Thank you! Uploaded as “${body.label}”.`;
  refreshSubmit();
}

async function deleteAll() {
  const list = loadUploads();
  const remaining = [];
  let deleted = 0;
  const failures = [];
  for (const u of list) {
    try {
      const res = await fetch(`/api/uploads/${encodeURIComponent(u.id)}`, { method: 'DELETE', headers: { 'X-Deletion-Token': u.token } });
      if (res.status === 204 || res.status === 404) deleted++;
      else { remaining.push(u); failures.push(await errorText(res)); }
    } catch (err) {
      remaining.push(u); failures.push(err.message);
    }
  }
  saveUploads(remaining);
  els.deleteResult.textContent = `Deleted ${deleted} upload(s).` + (failures.length ? ` ${failures.length} failed: ${failures[0]}` : '');
}

async function init() {
  // The label radios are rendered by the server from its label list (see upload.html).
  els.labels.addEventListener('change', refreshSubmit);
  renderUploads();
  els.consent.addEventListener('change', refreshSubmit);
  els.file.addEventListener('change', () => handleFile(els.file.files[0]).catch((err) => showMessage('Could not analyse the photo', err.message)));
  els.form.addEventListener('submit', submit);
  els.deleteAll.addEventListener('click', deleteAll);
  try {
    await chooseBackend({ fallbackOnRequest: true });
    detector = await new FaceDetector().load();
    state.ready = true;
    document.body.dataset.state = 'ready';
    els.status.textContent = 'Ready: choose a photo with a face.';
  } catch (err) {
    state.error = err.message;
    document.body.dataset.state = 'error';
    els.status.textContent = '';
    showMessage('The face detector failed to load', `${err.message}. Reload the page.`);
  }
}

init();
