// Live page wiring: environment checks, backend choice, model loading, camera loop, still photos.
import {
  currentCameraProblem, requestedBackend, useBackend, chooseBackend, registerServiceWorker,
} from './env.js';
import { Camera } from './camera.js';
import { FaceDetector } from './detector.js';
import { Ensemble, argmax } from './classifier.js';
import { Tracker } from './tracker.js';
import { drawOverlay } from './overlay.js';
import { analyse } from './pipeline.js';
import { drawPhoto, PhotoError } from './photo.js';
import { showMessage as showIn, hideMessage as hideIn } from './message.js';

const $ = (id) => document.getElementById(id);
const els = {
  video: $('video'), overlay: $('overlay'), status: $('status'), stats: $('stats'), message: $('message'),
  toggle: $('toggle'), switchCam: $('switch'), photo: $('photo'), stillWrap: $('still'), stillImage: $('still-image'),
  stillOverlay: $('still-overlay'), stillClose: $('still-close'), faceList: $('face-list'), placeholder: $('placeholder-note'),
};

const state = {
  ready: false, backend: null, status: 'loading', error: null, cameraProblem: null,
  faces: [], frames: 0, lastLatencyMs: null, detectMs: null, classifyMs: null, classifyPerFaceMs: null,
  fps: 0, labels: null, modelsLoaded: false, mode: 'live', backendTimings: null,
};
window.ferState = state;

let detector = null, classifier = null;
const camera = new Camera(els.video);
const tracker = new Tracker();
const scratch = document.createElement('canvas');
let running = false, loopToken = 0;

function setStatus(status, text) {
  state.status = status;
  document.body.dataset.state = status;
  if (text !== undefined) els.status.textContent = text;
}

const showMessage = (title, text, kind) => showIn(els.message, title, text, kind);
const hideMessage = () => hideIn(els.message);

function labelsOrDefault() { return classifier ? classifier.labels : ['face']; }

function publishFaces(faces, mode) {
  const labels = classifier ? classifier.labels : null;
  state.mode = mode;
  state.faces = faces.map((f) => {
    const probs = f.probs ? Array.from(f.probs) : null;
    const label = probs && labels ? labels[argmax(probs)] : null;
    return { id: f.id ?? null, box: { ...f.box }, score: f.score ?? f.det?.score ?? null, label, probs, lowlight: f.lowlight ?? f.det?.lowlight ?? null };
  });
  document.body.dataset.faces = String(state.faces.length);
  const items = state.faces.map((f, i) => {
    const li = document.createElement('li');
    li.dataset.label = f.label || '';
    li.textContent = f.label ? `Face ${i + 1}: ${f.label} (${Math.round(Math.max(...f.probs) * 100)}%)` : `Face ${i + 1}`;
    return li;
  });
  els.faceList.replaceChildren(...items);
}

function updateStats() {
  const parts = [`${state.backend}`];
  if (state.fps) parts.push(`${state.fps.toFixed(1)} fps`);
  if (state.lastLatencyMs != null) parts.push(`${Math.round(state.lastLatencyMs)} ms`);
  if (state.detectMs != null) parts.push(`detect ${Math.round(state.detectMs)}`);
  if (state.classifyPerFaceMs != null) parts.push(`classify ${Math.round(state.classifyPerFaceMs)}/face`);
  els.stats.textContent = parts.join(' · ');
}

async function step() {
  const v = els.video;
  if (v.readyState < 2 || !v.videoWidth) return;
  const t0 = performance.now();
  performance.mark('fer-frame-start');
  const r = await analyse(v, v.videoWidth, v.videoHeight, detector, classifier, scratch);
  const tracks = tracker.update(r.faces);
  const latency = performance.now() - t0;
  performance.measure('fer-frame', 'fer-frame-start');
  if (!running) return;
  drawOverlay(els.overlay, tracks, labelsOrDefault(), { width: v.videoWidth, height: v.videoHeight, mirror: camera.mirrored });
  state.frames++;
  state.lastLatencyMs = latency;
  state.detectMs = r.detectMs;
  if (r.faces.length && classifier) {
    state.classifyMs = r.classifyMs;
    state.classifyPerFaceMs = r.classifyMs / r.faces.length;
  }
  publishFaces(tracks, 'live');
  els.status.textContent = tracks.length ? `${tracks.length} face${tracks.length > 1 ? 's' : ''}` : 'Looking for faces…';
}

async function loop(token) {
  let last = performance.now();
  while (running && token === loopToken) {
    try {
      await step();
    } catch (err) {
      console.error(err);
      showMessage('Recognition failed', String(err && err.message || err));
      stop();
      return;
    }
    const now = performance.now();
    state.fps = 0.8 * state.fps + 0.2 * (1000 / Math.max(1, now - last));
    last = now;
    updateStats();
    await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  }
}

async function start() {
  hideMessage();
  closeStill();
  setStatus('starting', 'Starting camera…');
  try {
    await camera.start();
  } catch (err) {
    setStatus('ready', 'Camera unavailable');
    state.error = err.code || 'camera';
    showMessage('Camera unavailable', err.message);
    return;
  }
  els.video.classList.toggle('mirrored', camera.mirrored);
  running = true;
  tracker.reset();
  els.toggle.textContent = 'Stop';
  els.toggle.setAttribute('aria-pressed', 'true');
  setStatus('running', 'Looking for faces…');
  loop(++loopToken);
}

function stop() {
  running = false;
  loopToken++;
  camera.stop();
  els.overlay.getContext('2d').clearRect(0, 0, els.overlay.width, els.overlay.height);
  els.toggle.textContent = 'Start';
  els.toggle.setAttribute('aria-pressed', 'false');
  publishFaces([], 'live');
  if (state.ready) setStatus('ready', 'Stopped');
}

async function switchCamera() {
  if (!running) { camera.facing = camera.facing === 'user' ? 'environment' : 'user'; return start(); }
  try {
    await camera.switchFacing();
    els.video.classList.toggle('mirrored', camera.mirrored);
    tracker.reset();
  } catch (err) {
    showMessage('Could not switch camera', err.message);
  }
}

// ---- still-image mode ----
function closeStill() { els.stillWrap.hidden = true; document.body.classList.remove('still-mode'); }

async function analysePhoto(file) {
  if (!file) return;
  if (running) stop();
  hideMessage();
  const c = els.stillImage;
  try {
    await drawPhoto(file, c);
  } catch (err) {
    if (!(err instanceof PhotoError)) throw err;
    showMessage(err.title, err.message);
    return;
  }
  const w = c.width, h = c.height;
  els.stillWrap.hidden = false;
  document.body.classList.add('still-mode');
  setStatus('analysing', 'Analysing photo…');
  const r = await analyse(c, w, h, { detect: (s, sw, sh) => detector.detect(s, sw, sh, { thorough: true }) }, classifier, scratch);
  drawOverlay(els.stillOverlay, r.faces, labelsOrDefault(), { width: w, height: h, mirror: false });
  state.detectMs = r.detectMs;
  if (r.faces.length && classifier) state.classifyPerFaceMs = r.classifyMs / r.faces.length;
  publishFaces(r.faces, 'still');
  setStatus('ready', r.faces.length ? `${r.faces.length} face(s) in the photo` : 'No face found in the photo');
}

// ---- start-up ----
/** Time detector (+ classifier) on the current backend after warm-up; ms per run. */
async function benchmark(runs = 3) {
  const c = document.createElement('canvas');
  c.width = 320; c.height = 240;
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#777'; ctx.fillRect(0, 0, 320, 240);
  await detector.detect(c, 320, 240);
  if (classifier) await classifier.warmup();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) {
    await detector.detect(c, 320, 240);
    if (classifier) await classifier.classify([new Uint8Array(classifier.height * classifier.width).fill(100)]);
  }
  return (performance.now() - t0) / runs;
}

/** WebGL instead of wasm only if it is measurably faster here (no ?backend= given). */
async function maybeSwitchToWebgl() {
  const req = requestedBackend();
  if ((req && req !== 'auto') || state.backend !== 'wasm') return;
  const probe = document.createElement('canvas');
  if (!probe.getContext('webgl2') && !probe.getContext('webgl')) return;
  try {
    const wasmMs = await benchmark();
    await useBackend('webgl');
    const webglMs = await benchmark();
    state.backendTimings = { wasm: wasmMs, webgl: webglMs };
    if (webglMs < 0.8 * wasmMs) state.backend = 'webgl';
    else state.backend = await useBackend('wasm');
  } catch (err) {
    console.warn('WebGL probe failed; staying on wasm', err);
    state.backend = await useBackend('wasm');
  }
}

async function init() {
  document.body.dataset.faces = '0';
  setStatus('loading', 'Loading…');
  els.toggle.addEventListener('click', () => (running ? stop() : start()));
  els.switchCam.addEventListener('click', switchCamera);
  els.photo.addEventListener('change', () => analysePhoto(els.photo.files[0]));
  els.stillClose.addEventListener('click', () => { closeStill(); publishFaces([], 'live'); });
  registerServiceWorker().then((reg) => { state.serviceWorker = !!reg; });

  const problem = currentCameraProblem();
  state.cameraProblem = problem && problem.code;
  if (problem) {
    showMessage(problem.title, problem.message, 'warning');
    els.toggle.disabled = true;
    els.switchCam.disabled = true;
    $('idle-text').textContent = 'The live camera is not available here; tap Photo to analyse a still picture.';
  }

  try {
    state.backend = await chooseBackend();
    setStatus('loading', 'Loading face detector…');
    detector = await new FaceDetector().load();
  } catch (err) {
    console.error(err);
    state.error = 'detector';
    setStatus('error', 'Could not start');
    showMessage('The face detector failed to load', `${err.message}. Reload the page; if it persists, check that the server is running.`);
    return;
  }
  try {
    setStatus('loading', 'Loading expression models…');
    classifier = await Ensemble.load(undefined, (i, n, name) => setStatus('loading', `Loading model ${i + 1}/${n} (${name})…`));
    state.labels = classifier.labels;
    state.modelsLoaded = true;
    if (classifier.placeholder) els.placeholder.hidden = false;
  } catch (err) {
    console.error(err);
    state.error = 'models';
    showMessage('Expression models failed to load', `${err.message} Faces will still be boxed, without labels.`, 'warning');
  }
  try {
    await maybeSwitchToWebgl();
    setStatus('loading', 'Warming up…');
    await detector.warmup();
    if (classifier) await classifier.warmup();
  } catch (err) {
    console.error(err);
    state.error = 'warmup';
    setStatus('error', 'Could not start');
    showMessage('Recognition could not start', `${err.message}. Try ?backend=cpu in the address bar.`);
    return;
  }
  state.ready = true;
  updateStats();
  if (!problem) els.toggle.disabled = false;
  setStatus('ready', problem ? 'Photo mode only' : 'Ready — press Start');
  if (new URLSearchParams(location.search).get('autostart') === '1' && !problem) start();
}

init().catch((err) => {
  console.error(err);
  state.error = 'init';
  setStatus('error', 'Could not start');
  showMessage('Something went wrong', String(err && err.message || err));
});
