// Live page wiring: environment checks, backend choice, model loading (and the model menu when
// models/manifest.json offers variants), camera loop, still photos.
import {
  currentCameraProblem, requestedBackend, useBackend, chooseBackend, registerServiceWorker,
} from './env.js';
import { Camera } from './camera.js';
import { FaceDetector } from './detector.js';
import {
  Ensemble, MANIFEST_URL, VARIANT_KEY, fetchManifest, listVariants, pickVariant,
} from './classifier.js';
import { LivePipeline, liveOptions } from './live.js';
import { FrameLoop } from './frameloop.js';
import { drawOverlay, clearOverlay } from './overlay.js';
import { FaceNumbers, numberByPosition } from './numbering.js';
import { describeFaces, renderFaceList } from './facelist.js';
import { analyse } from './pipeline.js';
import { drawPhoto, PhotoError } from './photo.js';
import { showMessage as showIn, hideMessage as hideIn } from './message.js';
import { statsParts } from './statsline.js';

const $ = (id) => document.getElementById(id);
const els = {
  video: $('video'), overlay: $('overlay'), status: $('status'), stats: $('stats'), message: $('message'),
  toggle: $('toggle'), switchCam: $('switch'), photo: $('photo'), stillWrap: $('still'), stillImage: $('still-image'),
  stillOverlay: $('still-overlay'), stillClose: $('still-close'), faceList: $('face-list'), faceSummary: $('face-summary'), placeholder: $('placeholder-note'),
  modelChoice: $('model-choice'), modelSelect: $('model-select'), modelDescription: $('model-description'),
};

const state = {
  ready: false, backend: null, status: 'loading', error: null, cameraProblem: null,
  faces: [], frames: 0, lastLatencyMs: null, detectMs: null, classifyMs: null, classifyPerFaceMs: null,
  fps: 0, labels: null, modelsLoaded: false, mode: 'live', backendTimings: null,
  // Per camera frame, kept by frameloop.js: whole-frame times (ms) and camera frame ids of the
  // last <= 240 processed frames, frames delivered / processed since Start, both rates.
  frameTimes: [], frameIds: [], framesSeen: 0, framesProcessed: 0, cameraFps: 0,
  fullDetections: 0, followMs: null, classifiedFaces: 0,
  // The model menu: the manifest's variants [{id, title, description, default}] ([] when it
  // offers one model), the active one's id (null without variants), the manifest it came from.
  variants: [], variant: null, manifestUrl: null, switchingModel: false,
};

window.ferState = state;

let detector = null, classifier = null;
const camera = new Camera(els.video);
const numbers = new FaceNumbers(); // the small on-screen numbers of tracked faces
const scratch = document.createElement('canvas');
let live = null, frameLoop = null, running = false;
let topManifest = null, variants = []; // models/manifest.json and its listVariants()
let modelMessage = false; // the message box shows a model-loading problem (cleared by a new choice)

function setStatus(status, text) {
  state.status = status;
  document.body.dataset.state = status;
  if (text !== undefined) els.status.textContent = text;
}

const showMessage = (title, text, kind) => showIn(els.message, title, text, kind);
const hideMessage = () => hideIn(els.message);

function labelsOrDefault() { return classifier ? classifier.labels : ['face']; }

/** faces: numbered (numbering.js) and in that order, like the boxes. */
function publishFaces(faces, mode) {
  const labels = classifier ? classifier.labels : null;
  state.mode = mode;
  state.faces = describeFaces(faces, labels);
  document.body.dataset.faces = String(state.faces.length);
  renderFaceList(els.faceList, state.faces, labels, els.faceSummary);
}

/** The stats line: its parts joined by " · ", a line break only between two parts (CSS). */
function updateStats() {
  els.stats.replaceChildren(...statsParts(state).flatMap((text, i) => {
    const part = document.createElement('span');
    part.textContent = text;
    return i ? [' · ', part] : [part];
  }));
}

/** One distinct camera frame (called by the FrameLoop, never twice at once). */
async function step() {
  const v = els.video;
  if (v.readyState < 2 || !v.videoWidth) return;
  const t0 = performance.now();
  performance.mark('fer-frame-start');
  const r = await live.process(v, v.videoWidth, v.videoHeight, t0);
  if (!running) return;
  const view = { width: v.videoWidth, height: v.videoHeight, mirror: camera.mirrored };
  const tracks = numbers.assign(r.tracks, view);
  drawOverlay(els.overlay, tracks, labelsOrDefault(), view);
  publishFaces(tracks, 'live');
  if (!state.switchingModel) { // else the status line shows the model loading
    els.status.textContent = tracks.length ? `${tracks.length} face${tracks.length > 1 ? 's' : ''}` : 'Looking for faces…';
  }
  const latency = performance.now() - t0;
  performance.measure('fer-frame', 'fer-frame-start');
  state.frames++;
  state.lastLatencyMs = latency;
  if (r.full) { state.detectMs = r.detectMs; state.fullDetections++; } else state.followMs = r.detectMs;
  if (r.classified && classifier) {
    state.classifyMs = r.classifyMs;
    state.classifyPerFaceMs = r.classifyMs / r.classified;
    state.classifiedFaces += r.classified;
  }
  updateStats();
}

function failed(err) {
  console.error(err);
  showMessage('Recognition failed', String(err && err.message || err));
  stop();
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
  live.reset();
  numbers.reset();
  els.toggle.textContent = 'Stop';
  els.toggle.setAttribute('aria-pressed', 'true');
  setStatus('running', 'Looking for faces…');
  if (frameLoop) frameLoop.stop();
  frameLoop = new FrameLoop(els.video, step, state, failed).start();
}

function stop() {
  running = false;
  if (frameLoop) frameLoop.stop();
  frameLoop = null;
  camera.stop();
  clearOverlay(els.overlay);
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
    live.reset();
    numbers.reset();
    // A new stream numbers its frames from the start again: a fresh loop, fresh counters.
    frameLoop.stop();
    frameLoop = new FrameLoop(els.video, step, state, failed).start();
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
  // A still photo may hold many small faces and there is no next frame: the thorough detector
  // (letterboxed pass + overlapping tiles at a finer scale).
  const thorough = { detect: (s, sw, sh) => detector.detect(s, sw, sh, { thorough: true }) };
  let r;
  els.modelSelect.disabled = true; // the photo is classified by the model it started with
  try {
    r = await analyse(c, w, h, thorough, classifier, scratch);
  } finally {
    els.modelSelect.disabled = false;
  }
  const faces = numberByPosition(r.faces);
  drawOverlay(els.stillOverlay, faces, labelsOrDefault(), { width: w, height: h, mirror: false });
  state.detectMs = r.detectMs;
  if (r.faces.length && classifier) state.classifyPerFaceMs = r.classifyMs / r.faces.length;
  publishFaces(faces, 'still');
  setStatus('ready', r.faces.length ? `${r.faces.length} face(s) in the photo` : 'No face found in the photo');
}

// ---- models: the default or a chosen variant ----
function rememberedVariant() {
  try { return localStorage.getItem(VARIANT_KEY); } catch { return null; }
}

function rememberVariant(id) {
  try { localStorage.setItem(VARIANT_KEY, id); } catch { /* storage off: chosen for this visit only */ }
}

/** The ensemble of `variant` (null: the manifest offers no variants; the top one is loaded). */
function loadEnsemble(variant, onProgress) {
  if (!variant || variant.default) return Ensemble.load(MANIFEST_URL, onProgress, topManifest);
  return Ensemble.load(variant.url, onProgress);
}

/** Load `variant`; when a non-default one fails, say so and load the default instead. */
async function loadChosen(variant, onProgress) {
  try {
    return { ensemble: await loadEnsemble(variant, onProgress), variant };
  } catch (err) {
    const fallback = pickVariant(variants, null);
    if (!variant || variant.default || !fallback) throw err;
    console.error(err);
    showMessage(`${variant.title} is unavailable`, `${err.message} Using ${fallback.title} instead.`, 'warning');
    modelMessage = true;
    return { ensemble: await loadEnsemble(fallback, onProgress), variant: fallback };
  }
}

function useEnsemble(ensemble, variant) {
  classifier = ensemble;
  state.labels = ensemble.labels;
  state.modelsLoaded = true;
  state.variant = variant ? variant.id : null;
  state.manifestUrl = variant ? variant.url : new URL(MANIFEST_URL, location.href).href;
  els.placeholder.hidden = !ensemble.placeholder;
  if (variant) { els.modelSelect.value = variant.id; describeVariant(); }
}

function describeVariant() {
  const v = variants.find((x) => x.id === els.modelSelect.value);
  els.modelDescription.textContent = v ? v.description : '';
}

/** The model menu: shown only when the manifest offers two or more models. */
function renderModelChoice() {
  state.variants = variants.map(({ id, title, description, default: d }) => ({ id, title, description, default: d }));
  els.modelChoice.hidden = variants.length < 2;
  els.modelSelect.replaceChildren(...variants.map((v) => new Option(v.title, v.id)));
  if (state.variant) els.modelSelect.value = state.variant;
  describeVariant();
}

function setModelBusy(busy) {
  state.switchingModel = busy;
  els.modelSelect.disabled = busy;
  els.modelChoice.setAttribute('aria-busy', String(busy));
  els.photo.disabled = busy;
  document.body.dataset.model = busy ? 'loading' : 'ready';
}

/**
 * Switch to the variant `id`: the old ensemble is disposed before the new one loads (never two
 * in memory); a running camera keeps going meanwhile, boxing faces without labels.
 */
async function switchModel(id) {
  const next = variants.find((v) => v.id === id);
  if (!next || state.switchingModel || id === state.variant) return;
  rememberVariant(id);
  setModelBusy(true);
  if (modelMessage) { hideMessage(); modelMessage = false; }
  const old = classifier;
  classifier = null;
  state.modelsLoaded = false;
  if (live) live.setClassifier(null);
  if (old) old.dispose();
  const status = (text) => { els.status.textContent = text; };
  const before = els.status.textContent;
  status(`Loading ${next.title}…`);
  try {
    const r = await loadChosen(next, (i, n, name) => status(`Loading model ${i + 1}/${n} (${name})…`));
    status('Warming up…');
    await r.ensemble.warmup();
    useEnsemble(r.ensemble, r.variant);
    if (live) live.setClassifier(r.ensemble);
  } catch (err) {
    console.error(err);
    state.error = 'models';
    state.variant = null; // nothing loaded: any choice, the previous one too, tries again
    showMessage('Expression models failed to load', `${err.message} Faces will still be boxed, without labels.`, 'warning');
    modelMessage = true;
  } finally {
    setModelBusy(false);
    if (!running) status(before);
    else if (!state.faces.length) status('Looking for faces…');
  }
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
    await useBackend('webgl', { lazy: true });
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
  els.modelSelect.addEventListener('change', () => switchModel(els.modelSelect.value));
  els.modelSelect.disabled = true; // until the page is ready
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
    state.backend = await chooseBackend({ lazy: true });
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
    topManifest = await fetchManifest();
    variants = listVariants(topManifest);
    const r = await loadChosen(pickVariant(variants, rememberedVariant()),
      (i, n, name) => setStatus('loading', `Loading model ${i + 1}/${n} (${name})…`));
    useEnsemble(r.ensemble, r.variant);
    renderModelChoice();
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
  live = new LivePipeline(detector, classifier, liveOptions(location.search));
  state.ready = true;
  setModelBusy(false);
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
