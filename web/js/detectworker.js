// The live loop's face detector off the page's main thread: a module worker with its own TF.js
// (wasm backend) and BlazeFace, fed ImageBitmaps of camera frames by workerdetector.js. A
// detector pass is the dearest step of a frame (20-50 ms on a desktop core, several times that
// on a phone): run here, the page keeps following and classifying faces meanwhile, and its frame
// time no longer holds the pass. Messages (in): {type: 'init', tfjs, files} then
// {type: 'detect', id, bitmap, width, height, views, opts}; (out): {type: 'ready', size,
// backend} | {type: 'error', message}, and {type: 'result', id, dets, ms, views} | {type:
// 'result', id, error} per detect.
import { FaceDetector } from './detector.js';

// TF.js' UMD bundles, in the order a page's <script>s load them: imported for their side effect
// (each sets globalThis.tf as a classic script does; a module worker has no importScripts).
const TFJS_FILES = ['tf-core', 'tf-converter', 'tf-backend-cpu', 'tf-backend-wasm'];

let detector = null;
let queue = Promise.resolve();

async function init({ tfjs, files }) {
  for (const name of TFJS_FILES) await import(`${tfjs}${name}.es2017.min.js`);
  const tf = globalThis.tf;
  // Single-threaded SIMD, as on the page (env.js): the threaded build's own workers need blob:
  // scripts, which the CSP forbids; this worker already is the detector's thread.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  tf.wasm.setWasmPaths(tfjs);
  if (!(await tf.setBackend('wasm'))) throw new Error('TF.js wasm backend unavailable in a worker');
  await tf.ready();
  detector = await new FaceDetector().load(files);
  await detector.warmup();
  return { size: detector.size, backend: tf.getBackend() };
}

async function detect({ id, bitmap, width, height, views, opts }) {
  try {
    const t0 = performance.now();
    const dets = await detector.detectViews(bitmap, width, height, views, opts || {});
    return { type: 'result', id, dets, ms: performance.now() - t0, views: views.length };
  } catch (err) {
    return { type: 'result', id, error: String(err && err.message || err) };
  } finally {
    bitmap.close(); // the frame's pixels, freed now rather than at garbage collection
  }
}

self.onmessage = async ({ data }) => {
  if (data.type === 'init') {
    try {
      self.postMessage({ type: 'ready', ...(await init(data)) });
    } catch (err) {
      self.postMessage({ type: 'error', message: String(err && err.message || err) });
    }
  } else if (data.type === 'detect') {
    // One pass at a time (they share the detector's input canvas), in the order asked.
    queue = queue.then(() => detect(data)).then((msg) => self.postMessage(msg));
  }
};
