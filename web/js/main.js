// Live page wiring: environment checks, backend choice, model loading (and the model menu when
// models/manifest.json offers variants), camera loop, still photos. The page's state and what
// each control can do in it live in pagestate.js: every action goes through enter(state).
import { currentCameraProblem, defaultBackend, registerServiceWorker, tfjsFolder } from './env.js';
import { startBackend, probe, storage, choiceKey, rememberChoice, forgetChoice } from './backendchoice.js';
import { loadingText } from './loadstatus.js';
import { Camera } from './camera.js';
import { FaceDetector, STILL } from './detector.js';
import { WorkerDetector, WorkerClassifier } from './workermodels.js';
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
import { showMessage as showIn, hideMessage as hideIn, sentences } from './message.js';
import { controlsFor } from './pagestate.js';
import { statsParts } from './statsline.js';

const $ = (id) => document.getElementById(id);
const els = {
  video: $('video'), overlay: $('overlay'), status: $('status'), stats: $('stats'), message: $('message'),
  toggle: $('toggle'), switchCam: $('switch'), photo: $('photo'), stillWrap: $('still'), stillImage: $('still-image'),
  stillOverlay: $('still-overlay'), stillClose: $('still-close'), faceList: $('face-list'), faceSummary: $('face-summary'), placeholder: $('placeholder-note'),
  modelChoice: $('model-choice'), modelSelect: $('model-select'), modelDescription: $('model-description'), controlNote: $('control-note'),
};

const state = {
  ready: false, backend: null, status: 'loading', error: null, cameraProblem: null,
  faces: [], frames: 0, lastLatencyMs: null, detectMs: null, classifyMs: null, classifyPerFaceMs: null,
  fps: 0, labels: null, modelsLoaded: false, mode: 'live',
  // How the backend was chosen (backendchoice.js): {source: 'url' | 'remembered' | 'probe' |
  // 'default' | 'fallback', why (after a probe)}; the probe's ms per detector pass, when it timed.
  backendChoice: null, backendTimings: null,
  // Per camera frame, kept by frameloop.js: whole-frame times (ms) and camera frame ids of the
  // last <= 240 processed frames, frames delivered / processed since Start, both rates.
  frameTimes: [], frameIds: [], framesSeen: 0, framesProcessed: 0, cameraFps: 0,
  fullDetections: 0, followMs: null, classifiedFaces: 0,
  // Where the live loop's detector and classifier run: 'worker' (modelworker.js) or 'main' (this
  // thread: no worker support, a backend other than wasm, ?worker=0 or ?reuse=0), and why not a worker.
  detectorThread: null, classifierThread: null, workerNote: null,
  // The model menu: the manifest's variants [{id, title, description, default}] ([] when it
  // offers one model), the active one's id (null without variants), the manifest it came from.
  variants: [], variant: null, manifestUrl: null, switchingModel: false,
};

window.ferState = state;

let detector = null, classifier = null;
let detectorFiles = null; // the detector's model bytes (the worker builds its own copy from them)
let ensembleFiles = null; // the loaded ensemble's bytes (likewise)
let liveClassifier = null; // the live loop's classifier: a WorkerClassifier, else `classifier`
const camera = new Camera(els.video);
const numbers = new FaceNumbers(); // the small on-screen numbers of tracked faces
const scratch = document.createElement('canvas');
let live = null, frameLoop = null;
let processing = null; // the frame LivePipeline is working on (a stopped loop's may still run)
let topManifest = null, variants = []; // models/manifest.json and its listVariants()
let modelMessage = false; // the message box shows a model-loading problem (cleared by a new choice)
let phase = 'loading'; // the page's state (pagestate.js); ferState.status shows it
let phaseText = 'Loading…'; // the status line of the current state (a model switch writes over it for a while)
let resumeCamera = false; // the camera ran before the photo: "Back to camera" starts it again

const controls = () => controlsFor(phase, { cameraProblem: !!state.cameraProblem, modelBusy: state.switchingModel });

/** Enter the page state `phase` (pagestate.js), with `text` on the status line. */
function enter(next, text) {
  phase = next;
  state.status = next;
  document.body.dataset.state = next;
  if (text !== undefined) { phaseText = text; els.status.textContent = text; }
  render();
}

/** Every control as the state says, and the reason when some are off. */
function render() {
  const c = controls();
  els.toggle.disabled = !c.toggle;
  els.toggle.textContent = c.toggleLabel;
  els.toggle.setAttribute('aria-pressed', String(c.toggleLabel === 'Stop'));
  els.switchCam.disabled = !c.flip;
  els.photo.disabled = !c.photo;
  els.stillClose.hidden = !c.closeShown;
  els.stillClose.disabled = !c.close;
  els.modelSelect.disabled = !c.model;
  els.controlNote.textContent = c.reason;
  els.controlNote.hidden = !c.reason;
  updateStats();
}

const readyText = () => (state.cameraProblem ? 'Photo mode only' : 'Ready — press Start');
const facesText = (n) => (n ? `${n} face${n > 1 ? 's' : ''}` : 'Looking for faces…');

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
  processing = live.process(v, v.videoWidth, v.videoHeight, t0);
  const r = await processing;
  if (phase !== 'running') return; // stopped (or switching camera) meanwhile
  const view = { width: v.videoWidth, height: v.videoHeight, mirror: camera.mirrored };
  const tracks = numbers.assign(r.tracks, view);
  drawOverlay(els.overlay, tracks, labelsOrDefault(), view);
  publishFaces(tracks, 'live');
  if (!state.switchingModel) els.status.textContent = facesText(tracks.length); // else it shows the model loading
  const latency = performance.now() - t0;
  performance.measure('fer-frame', 'fer-frame-start');
  state.frames++;
  state.lastLatencyMs = latency;
  if (r.full) { state.detectMs = r.detectMs; state.fullDetections++; } else state.followMs = r.followMs;
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

function stopCamera() {
  if (frameLoop) frameLoop.stop();
  frameLoop = null;
  camera.stop();
}

/**
 * Start the camera (facing: 'user' | 'environment'). keepFaces (a camera switch while running):
 * the tracked faces keep their tracks and numbers, since the preview's mirroring changes the
 * faces' reading order but not who they are.
 */
async function start(facing = camera.facing, { keepFaces = false } = {}) {
  hideMessage();
  closeStill();
  stopCamera();
  clearOverlay(els.overlay); // (the list keeps the faces a camera switch keeps)
  if (!keepFaces) publishFaces([], 'live');
  enter('starting', 'Starting camera…');
  try {
    await camera.start(facing);
  } catch (err) {
    publishFaces([], 'live');
    state.error = err.code || 'camera';
    enter('ready', 'Camera unavailable');
    showMessage('Camera unavailable', err.message);
    return;
  }
  els.video.classList.toggle('mirrored', camera.mirrored);
  // The old loop's last frame first: LivePipeline takes one frame at a time.
  await Promise.resolve(processing).catch(() => {});
  if (keepFaces) live.redetect();
  else { live.reset(); numbers.reset(); }
  state.detectMs = state.classifyPerFaceMs = null; // this stream's own, once measured
  enter('running', 'Looking for faces…');
  // A new stream numbers its frames from the start again: a fresh loop, fresh counters.
  frameLoop = new FrameLoop(els.video, step, state, failed).start();
}

function stop() {
  stopCamera();
  clearOverlay(els.overlay);
  publishFaces([], 'live');
  enter('ready', 'Stopped');
}

function toggleCamera() {
  if (!controls().toggle) return;
  if (phase === 'running') stop();
  else start();
}

function switchCamera() {
  if (!controls().flip) return;
  const other = camera.facing === 'user' ? 'environment' : 'user';
  return start(other, { keepFaces: phase === 'running' });
}

// ---- still-image mode ----
function closeStill() {
  els.stillWrap.hidden = true;
  document.body.classList.remove('still-mode');
  clearOverlay(els.stillOverlay);
}

/** "Back to camera": the camera again if it ran before the photo, else the idle page. */
function backToCamera() {
  if (!controls().close) return;
  closeStill();
  publishFaces([], 'live');
  if (resumeCamera && !state.cameraProblem) start();
  else enter('ready', readyText());
}

async function analysePhoto(file) {
  els.photo.value = ''; // the same file picked again is a new change
  if (!file || !controls().photo) return;
  hideMessage();
  let picture;
  try {
    picture = await drawPhoto(file); // decoded first: a file it cannot read leaves the camera running
  } catch (err) {
    if (!(err instanceof PhotoError)) throw err;
    showMessage(err.title, err.message);
    return;
  }
  if (!controls().photo) return; // the page moved on while the file was read
  if (phase === 'running') resumeCamera = true;
  else if (phase === 'ready') resumeCamera = false; // (a photo after a photo keeps it)
  stopCamera();
  clearOverlay(els.overlay);
  const c = els.stillImage, w = picture.width, h = picture.height;
  c.width = w; c.height = h;
  c.getContext('2d').drawImage(picture, 0, 0);
  clearOverlay(els.stillOverlay);
  publishFaces([], 'still');
  els.stillWrap.hidden = false;
  document.body.classList.add('still-mode');
  enter('analysing', 'Analysing photo…');
  // A still photo may hold many small faces and there is no next frame: the thorough detector
  // (letterboxed pass + overlapping tiles at a finer scale), each face it finds checked (STILL).
  const thorough = { detect: (s, sw, sh) => detector.detect(s, sw, sh, STILL) };
  let r;
  try {
    r = await analyse(c, w, h, thorough, classifier, scratch);
  } catch (err) {
    console.error(err);
    closeStill();
    publishFaces([], 'live');
    if (resumeCamera) await start(); else enter('ready', readyText());
    showMessage('Could not analyse the photo', String(err && err.message || err));
    return;
  }
  const faces = numberByPosition(r.faces);
  drawOverlay(els.stillOverlay, faces, labelsOrDefault(), { width: w, height: h, mirror: false });
  state.detectMs = r.detectMs;
  state.classifyPerFaceMs = r.faces.length && classifier ? r.classifyMs / r.faces.length : null;
  publishFaces(faces, 'still');
  enter('photo', r.faces.length ? `${r.faces.length} face(s) in the photo` : 'No face found in the photo');
}

// ---- models: the default or a chosen variant ----
function rememberedVariant() {
  try { return localStorage.getItem(VARIANT_KEY); } catch { return null; }
}

function rememberVariant(id) {
  try { localStorage.setItem(VARIANT_KEY, id); } catch { /* storage off: chosen for this visit only */ }
}

/**
 * The ensemble of `variant` (null: the manifest offers no variants; the top one is loaded):
 * downloaded at once (onProgress(i, n, name) before member i of n, onDownloaded() after), built
 * once `engineReady` resolves (start-up: when the backend is chosen, so that the tensors are
 * made on the backend that runs them).
 */
async function loadEnsemble(variant, { onProgress = () => {}, onDownloaded = () => {}, engineReady = null } = {}) {
  const files = !variant || variant.default
    ? await Ensemble.download(MANIFEST_URL, onProgress, topManifest)
    : await Ensemble.download(variant.url, onProgress);
  onDownloaded();
  await engineReady;
  const ensemble = Ensemble.build(files);
  ensembleFiles = files;
  return ensemble;
}

/** Load `variant` (loadEnsemble's options); when a non-default one fails, say so and load the default instead. */
async function loadChosen(variant, options) {
  try {
    return { ensemble: await loadEnsemble(variant, options), variant };
  } catch (err) {
    const fallback = pickVariant(variants, null);
    if (!variant || variant.default || !fallback) throw err;
    console.error(err);
    if (phase !== 'failed') {
      showMessage(`${variant.title} is unavailable`, sentences(err.message, `Using ${fallback.title} instead.`), 'warning');
      modelMessage = true;
    }
    return { ensemble: await loadEnsemble(fallback, options), variant: fallback };
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
  els.modelChoice.setAttribute('aria-busy', String(busy));
  document.body.dataset.model = busy ? 'loading' : 'ready';
  render();
}

/**
 * Switch to the variant `id`: the old ensemble is disposed before the new one loads (never two
 * in memory); a running camera keeps going meanwhile, boxing faces without labels.
 */
async function switchModel(id) {
  const next = variants.find((v) => v.id === id);
  if (!next || !controls().model || id === state.variant) return;
  rememberVariant(id);
  setModelBusy(true);
  if (modelMessage) { hideMessage(); modelMessage = false; }
  const old = classifier;
  classifier = null;
  state.modelsLoaded = false;
  if (live) live.setClassifier(null);
  if (old) old.dispose();
  const status = (text) => { els.status.textContent = text; };
  status(`Loading ${next.title}…`);
  try {
    const r = await loadChosen(next, { onProgress: (i, n, name) => status(`Loading model ${i + 1}/${n} (${name})…`) });
    status('Warming up…');
    await r.ensemble.warmup();
    useEnsemble(r.ensemble, r.variant);
    if (liveClassifier && liveClassifier.async && !liveClassifier.failed) {
      // The live loop's worker swaps its ensemble too (a photo uses this thread's).
      try { await liveClassifier.load(ensembleFiles); } catch (err) {
        console.warn('the classifier worker could not load the model; classifying on the main thread', err);
        liveClassifier = r.ensemble;
        state.classifierThread = 'main';
      }
    } else liveClassifier = r.ensemble;
    if (live) { live.classifierFallback = r.ensemble; live.setClassifier(liveClassifier); }
  } catch (err) {
    console.error(err);
    state.error = 'models';
    state.variant = null; // nothing loaded: any choice, the previous one too, tries again
    showMessage('Expression models failed to load', sentences(err.message, 'Faces will still be boxed, without labels.'), 'warning');
    modelMessage = true;
  } finally {
    setModelBusy(false);
    // The status line of the state the page is in now (it may have changed meanwhile).
    status(phase === 'running' ? facesText(state.faces.length) : phaseText);
  }
}

// ---- start-up ----
// What is loading, for the status line (loadstatus.js); shown while the page is 'loading'.
const loading = { engine: null, detector: false, models: null, warmup: false };

function showLoading(change) {
  Object.assign(loading, change);
  if (phase === 'loading') enter('loading', loadingText(loading));
}

/**
 * The expression models: downloaded from the start (no backend needed for that), built once
 * `engineReady` resolves. Resolves to {ensemble, variant}, or {error}; never rejects.
 */
async function loadModels(engineReady) {
  try {
    showLoading({ models: { index: 0, total: null } });
    topManifest = await fetchManifest();
    variants = listVariants(topManifest);
    return await loadChosen(pickVariant(variants, rememberedVariant()), {
      onProgress: (index, total) => showLoading({ models: { index, total } }),
      onDownloaded: () => showLoading({ models: null }),
      engineReady,
    });
  } catch (error) {
    showLoading({ models: null });
    return { error };
  }
}

/**
 * The backend: the URL's, the remembered one, else wasm while probe() times the detector (the
 * models download meanwhile). `detectorFiles`: the detector's download, started with the page.
 * Resolves when TF.js runs on the backend the page will use.
 */
async function chooseEngine(detectorFiles) {
  showLoading({ engine: 'starting', detector: true });
  const start = await startBackend();
  performance.mark('fer-backend');
  state.backend = start.backend;
  state.backendChoice = { source: start.source, why: start.why || null };
  showLoading({ engine: null });
  detector = await new FaceDetector().load(await detectorFiles);
  performance.mark('fer-detector');
  showLoading({ detector: false });
  if (!start.probe) return;
  showLoading({ engine: 'choosing' });
  performance.mark('fer-probe-start');
  const r = await probe(detector);
  performance.measure('fer-probe', 'fer-probe-start');
  rememberChoice(storage(), choiceKey(), r);
  state.backend = r.backend;
  state.backendTimings = r.timings || null;
  state.backendChoice = { source: 'probe', why: r.why };
  showLoading({ engine: null });
}

/** Why the live loop's models stay on this thread (null: they go to workers). */
function workerWhy(options) {
  if (new URLSearchParams(location.search).get('worker') === '0') return 'worker=0';
  // ?reuse=0, the benchmark's every-frame row: like the peers, everything on the main thread.
  if (options.detectEvery === 1) return 'reuse=0';
  return state.backend !== 'wasm' ? `backend ${state.backend}` : null;
}

/**
 * The live loop's detector: a WorkerDetector (the page's main thread then never waits for a
 * detector pass), else the page's own FaceDetector; never rejects.
 */
async function liveDetector(options) {
  const why = workerWhy(options);
  if (!why) {
    try {
      const w = await WorkerDetector.start({ files: await detectorFiles, tfjs: tfjsFolder() });
      state.detectorThread = 'worker';
      return w;
    } catch (err) {
      console.warn('face detector worker unavailable; detecting on the main thread', err);
      state.workerNote = String(err && err.message || err);
    }
  } else state.workerNote = why;
  state.detectorThread = 'main';
  return detector;
}

/** The live loop's classifier: a WorkerClassifier with the loaded ensemble, else `classifier`; never rejects. */
async function startLiveClassifier(options) {
  if (!classifier) return null;
  if (!workerWhy(options)) {
    try {
      const w = await WorkerClassifier.start({ files: ensembleFiles, tfjs: tfjsFolder() });
      state.classifierThread = 'worker';
      return w;
    } catch (err) {
      console.warn('classifier worker unavailable; classifying on the main thread', err);
      state.workerNote = String(err && err.message || err);
    }
  }
  state.classifierThread = 'main';
  return classifier;
}

async function warmup() {
  showLoading({ warmup: true });
  await detector.warmup();
  if (classifier) await classifier.warmup();
}

async function init() {
  document.body.dataset.faces = '0';
  const problem = currentCameraProblem();
  state.cameraProblem = problem && problem.code;
  enter('loading', 'Loading…');
  els.toggle.addEventListener('click', toggleCamera);
  els.switchCam.addEventListener('click', switchCamera);
  els.photo.addEventListener('change', () => analysePhoto(els.photo.files[0]));
  els.stillClose.addEventListener('click', backToCamera);
  els.modelSelect.addEventListener('change', () => switchModel(els.modelSelect.value));

  if (problem) {
    showMessage(problem.title, problem.message, 'warning');
    $('idle-text').textContent = 'The live camera is not available here; tap Photo to analyse a still picture.';
  }

  // Every model downloads from the start, while the backend starts (and the probe runs); the
  // expression models are built when the backend is settled (a failed start leaves them unbuilt).
  let engineChosen;
  const models = loadModels(new Promise((resolve) => { engineChosen = resolve; }));
  detectorFiles = FaceDetector.download();
  detectorFiles.catch(() => {}); // (its failure is chooseEngine's, reported there)
  try {
    await chooseEngine(detectorFiles);
  } catch (err) {
    console.error(err);
    state.error = 'detector';
    enter('failed', 'Could not start');
    showMessage('The face detector failed to load', sentences(err.message, 'Reload the page; if it persists, check that the server is running.'));
    return;
  }
  engineChosen();
  // The worker starts its own TF.js while this thread builds and warms up the models.
  const options = liveOptions(location.search);
  const liveDetectorReady = liveDetector(options);
  const r = await models;
  performance.mark('fer-models');
  if (r.error) {
    console.error(r.error);
    state.error = 'models';
    showMessage('Expression models failed to load', sentences(r.error.message, 'Faces will still be boxed, without labels.'), 'warning');
  } else {
    useEnsemble(r.ensemble, r.variant);
    renderModelChoice();
  }
  const liveClassifierReady = startLiveClassifier(options); // (its worker warms up alongside this thread)
  try {
    try {
      await warmup();
    } catch (err) {
      // WebGL chosen by an earlier visit or by the probe, failing now (its shaders, a lost
      // context): forgotten, and wasm (else cpu) instead. A backend the URL asked for fails.
      if (state.backend !== 'webgl' || state.backendChoice.source === 'url') throw err;
      console.warn('WebGL failed to warm up; forgotten, using wasm', err);
      forgetChoice(storage());
      state.backend = await defaultBackend();
      state.backendChoice = { source: 'fallback' };
      await warmup();
    }
  } catch (err) {
    console.error(err);
    state.error = 'warmup';
    enter('failed', 'Could not start');
    showMessage('Recognition could not start', sentences(err.message, 'Try ?backend=cpu in the address bar.'));
    return;
  }
  showLoading({ warmup: false });
  liveClassifier = await liveClassifierReady;
  live = new LivePipeline(await liveDetectorReady, liveClassifier, { ...options, fallback: detector, classifierFallback: classifier });
  state.ready = true;
  setModelBusy(false);
  performance.mark('fer-ready');
  enter('ready', readyText());
  if (new URLSearchParams(location.search).get('autostart') === '1' && !problem) start();
}

init().catch((err) => {
  console.error(err);
  state.error = 'init';
  enter('failed', 'Could not start');
  showMessage('Something went wrong', String(err && err.message || err));
}).finally(() => {
  // Once started (or failed): the worker's install precaches every file (~3 MB), which on a
  // first visit took CPU and bandwidth from the page's own start (0.65 s of 2.7 s here).
  registerServiceWorker().then((reg) => { state.serviceWorker = !!reg; });
});
