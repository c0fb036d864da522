// The live loop's models off the page's main thread: a module worker with its own TF.js (wasm
// backend) hosting either BlazeFace (role 'detector', fed camera frames: their YUV planes or
// ImageBitmaps) or the expression ensemble (role 'classifier', fed grey face crops);
// workermodels.js is the page's side, and the page starts one worker of each. A detector pass is the dearest step
// of a frame (20-50 ms on a desktop core, several times that on a phone) and a classification
// the next: run here, the page keeps following faces meanwhile and its frame time holds
// neither. Messages (in): {type: 'init', role, tfjs, files}, then per role {type: 'detect', id,
// bitmap | yuv, width, height, views, opts} | {type: 'classify', id, crops} | {type: 'load', id,
// files} (another ensemble); (out): {type: 'ready', ...} | {type: 'error', message} after init,
// {type: 'result', id, ...} | {type: 'result', id, error} per request.
import { FaceDetector } from './detector.js';
import { Ensemble } from './classifier.js';
import { yuvToRgba } from './yuv.js';

// TF.js' UMD bundles, in the order a page's <script>s load them: imported for their side effect
// (each sets globalThis.tf as a classic script does; a module worker has no importScripts).
const TFJS_FILES = ['tf-core', 'tf-converter', 'tf-backend-cpu', 'tf-backend-wasm'];

let model = null; // the FaceDetector or the Ensemble this worker hosts
let frame = null; // {canvas, image}: a camera frame's planes converted to RGB (yuv.js), reused

/** A canvas showing a camera frame given as its planes (live.js sends them so). */
function frameCanvas(yuv) {
  const { width, height } = yuv;
  if (!frame || frame.canvas.width !== width || frame.canvas.height !== height) {
    const canvas = new OffscreenCanvas(width, height);
    frame = { canvas, ctx: canvas.getContext('2d'), image: new ImageData(width, height) };
  }
  yuvToRgba({ ...yuv, data: yuv.yuv }, frame.image.data);
  frame.ctx.putImageData(frame.image, 0, 0);
  return frame.canvas;
}
let queue = Promise.resolve();

async function startTf(tfjs) {
  for (const name of TFJS_FILES) await import(`${tfjs}${name}.es2017.min.js`);
  const tf = globalThis.tf;
  // Single-threaded SIMD, as on the page (env.js): the threaded build's own workers need blob:
  // scripts, which the CSP forbids; this worker already is the model's thread.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  tf.wasm.setWasmPaths(tfjs);
  if (!(await tf.setBackend('wasm'))) throw new Error('TF.js wasm backend unavailable in a worker');
  await tf.ready();
  return tf.getBackend();
}

async function buildEnsemble(files) {
  const ensemble = Ensemble.build(files);
  await ensemble.warmup();
  return ensemble;
}

const describe = (e) => ({ labels: e.labels, height: e.height, width: e.width, equalizeBelow: e.equalizeBelow });

async function init({ role, tfjs, files }) {
  const backend = await startTf(tfjs);
  if (role === 'detector') {
    model = await new FaceDetector().load(files);
    await model.warmup();
    return { backend, size: model.size };
  }
  model = await buildEnsemble(files);
  return { backend, ...describe(model) };
}

async function handle(data) {
  const { id } = data;
  try {
    if (data.type === 'detect') {
      const t0 = performance.now();
      const pixels = data.yuv ? frameCanvas(data.yuv) : data.bitmap;
      const dets = await model.detectViews(pixels, data.width, data.height, data.views, data.opts || {});
      return { type: 'result', id, dets, ms: performance.now() - t0, views: model.lastViews };
    }
    if (data.type === 'classify') {
      const t0 = performance.now();
      const probs = await model.classify(data.crops);
      return { type: 'result', id, probs, ms: performance.now() - t0 };
    }
    if (data.type === 'load') {
      if (model) model.dispose(); // never two ensembles in memory
      model = null;
      model = await buildEnsemble(data.files);
      return { type: 'result', id, ...describe(model) };
    }
    return { type: 'result', id, error: `unknown request ${data.type}` };
  } catch (err) {
    return { type: 'result', id, error: String(err && err.message || err) };
  } finally {
    if (data.bitmap) data.bitmap.close(); // the frame's pixels, freed now rather than at garbage collection
  }
}

self.onmessage = async ({ data }) => {
  if (data.type === 'init') {
    try {
      self.postMessage({ type: 'ready', ...(await init(data)) });
    } catch (err) {
      self.postMessage({ type: 'error', message: String(err && err.message || err) });
    }
    return;
  }
  // One request at a time (a detector's passes share its input canvas), in the order asked.
  queue = queue.then(() => handle(data)).then((msg) => self.postMessage(msg));
};
