// Upload page: detect faces in a photo (in the browser), show the aligned crop, send crop + label
// with explicit consent to POST /api/uploads; remember deletion tokens in localStorage.
// Every contribution gets a random Idempotency-Key, saved (PENDING_KEY) before it is sent: when the
// answer is lost (network error, server error), the same form is re-sent once with the same key,
// and pressing Upload again for the same face and label re-sends it too. The server then returns
// the deletion token of the contribution it already stored instead of storing it twice.
// Once a face and label are stored, Upload stays off until the face or the label changes: a
// second tap would add a second claim on the same face.
// The faces are numbered in reading order (numbering.js), on the photo (overlay.js, as on the
// live page) and on their crops, so "Face 2" is the same face in both places.
import { chooseBackend } from './env.js';
import { FaceDetector } from './detector.js';
import { drawAligned, toGray, grayToCanvas } from './align.js';
import { drawPhoto, PhotoError } from './photo.js';
import { showMessage as showIn, hideMessage, sentences } from './message.js';
import { numberByPosition } from './numbering.js';
import { drawOverlay, clearOverlay } from './overlay.js';

export const STORE_KEY = 'fer-hybrid.uploads';
export const PENDING_KEY = 'fer-hybrid.pending';
export const CROP_SIZE = 128;

const $ = (id) => document.getElementById(id);
const els = {
  file: $('file'), status: $('status'), preview: $('photo-preview'), previewOverlay: $('preview-overlay'), cropCard: $('crop-card'), crops: $('crops'),
  form: $('form'), labels: $('labels'), consent: $('consent'), sendOriginal: $('send-original'), submit: $('submit'),
  result: $('result'), uploads: $('uploads'), deleteAll: $('delete-all'), deleteResult: $('delete-result'), message: $('message'),
};
// faces: how many were found; numbered: [{number, box}] in crop order (box in photo pixels).
const state = { ready: false, faces: 0, numbered: [], selected: -1, lastUpload: null, error: null };
window.ferUploadState = state;

let detector = null;
let photoFile = null;
let cropCanvases = [];
let pending = null; // { key, sig } of the contribution whose answer has not arrived
let sending = false; // an upload is on its way
let photoNumber = 0; // counts the photos chosen, so that a choice names its photo
let stored = null; // choice() of the face and label already stored

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

/** The photo, face and label chosen now, as one string. */
const choice = () => `${photoNumber}|${state.selected}|${selectedLabel()}`;

function refreshSubmit() {
  const complete = els.consent.checked && selectedLabel() && state.selected >= 0;
  els.submit.disabled = !complete || sending || choice() === stored;
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
  photoNumber++;
  state.selected = -1; state.faces = 0; state.numbered = []; cropCanvases = [];
  els.crops.replaceChildren();
  els.cropCard.hidden = true;
  clearOverlay(els.previewOverlay);
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
  const faces = numberByPosition(await detector.detect(work, w, h)); // reading order, numbered
  state.faces = faces.length;
  state.numbered = faces.map((f) => ({ number: f.number, box: { ...f.box } }));
  document.body.dataset.faces = String(faces.length);
  drawOverlay(els.previewOverlay, faces, null, { width: w, height: h });
  if (!faces.length) {
    els.status.textContent = 'No face found. Try a photo where the face is larger, frontal and well lit.';
    return;
  }
  els.status.textContent = `${faces.length} face(s) found.`;
  faces.forEach((d, i) => {
    const rgb = drawAligned(work, d, CROP_SIZE);
    const gray = toGray(rgb.getContext('2d').getImageData(0, 0, CROP_SIZE, CROP_SIZE));
    const c = grayToCanvas(gray, CROP_SIZE);
    cropCanvases.push(c);
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('aria-label', `Face ${d.number}`);
    const num = document.createElement('b');
    num.className = 'crop-num';
    num.setAttribute('aria-hidden', 'true'); // the button's label says it
    num.textContent = String(d.number);
    b.append(c, num);
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
  if (els.submit.disabled || !label) return; // nothing to send, or sent already
  const sent = choice();
  sending = true;
  refreshSubmit();
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
    sending = false;
    refreshSubmit();
    return;
  }
  pending = null;
  setPending(key, null);
  if (res.status !== 201 && !res.ok) {
    els.result.textContent = '';
    state.error = await errorText(res);
    showMessage(`Upload refused (${res.status})`, state.error);
    sending = false;
    refreshSubmit();
    return;
  }
  const body = await res.json();
  state.lastUpload = body;
  const list = loadUploads();
  list.push({ id: body.id, token: body.deletion_token, label: body.label, duplicate: !!body.duplicate, at: Date.now() });
  saveUploads(list);
  els.result.dataset.status = 'ok';
  els.result.textContent = (body.duplicate
    ? `Thank you! This crop was already in the dataset (label “${body.label}”).`
    : `Thank you! Uploaded as “${body.label}”.`) + ' To send another, choose another face or photo.';
  stored = sent;
  sending = false;
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
    showMessage('The face detector failed to load', sentences(err.message, 'Reload the page.'));
  }
}

init();
