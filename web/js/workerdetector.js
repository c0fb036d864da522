// The page's side of detectworker.js: the same detectViews() as FaceDetector, but the pass runs
// in a worker, so awaiting it does not hold the main thread (live.js does not even await it: it
// follows the faces it has meanwhile and takes the detections when they come). `async: true`
// tells live.js so. start() rejects where a browser lacks module workers, OffscreenCanvas or
// createImageBitmap, or where the worker cannot start TF.js; the page then keeps the detector
// on its main thread, as before.

export const WORKER_URL = new URL('./detectworker.js', import.meta.url);

/** Can this browser run the detector in a worker? (The worker needs all three.) */
export function workerSupported(g = globalThis) {
  return typeof g.Worker === 'function' && typeof g.OffscreenCanvas === 'function'
    && typeof g.createImageBitmap === 'function';
}

export class WorkerDetector {
  constructor(worker, size) {
    Object.assign(this, { worker, size });
    this.async = true;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.nextId = 1;
    this.lastViews = 0;
    this.lastMs = null; // the worker's time for the last request (ms)
    this.failed = null; // set when the worker died: every request since rejects with it
    worker.onmessage = ({ data }) => this._answer(data);
    worker.onerror = (e) => this._fail(new Error(`face detector worker failed: ${e.message || 'error'}`));
  }

  /**
   * A started, warmed-up worker with the detector built from `files` (FaceDetector.download()'s
   * bytes, so the model is not fetched twice); `tfjs`: the vendored TF.js folder's URL.
   */
  static async start({ files, tfjs, timeoutMs = 60000, url = WORKER_URL } = {}) {
    if (!workerSupported()) throw new Error('no module worker, OffscreenCanvas or createImageBitmap here');
    const worker = new Worker(url, { type: 'module' });
    try {
      const ready = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the detector worker did not start in time')), timeoutMs);
        worker.onmessage = ({ data }) => {
          clearTimeout(timer);
          if (data.type === 'ready') resolve(data); else reject(new Error(data.message));
        };
        // A browser without module workers fails here (the script's `import` is a syntax error).
        worker.onerror = (e) => { clearTimeout(timer); e.preventDefault?.(); reject(new Error(e.message || 'worker error')); };
        worker.postMessage({ type: 'init', tfjs: new URL(tfjs, location.href).href, files });
      });
      return new WorkerDetector(worker, ready.size);
    } catch (err) {
      worker.terminate();
      throw err;
    }
  }

  /**
   * Detections of `views` (tiles.js) of `source` (a video, canvas or image), as FaceDetector's:
   * the frame is copied into an ImageBitmap and handed to the worker (transferred, not cloned).
   */
  async detectViews(source, width, height, views, opts = {}) {
    if (this.failed) throw this.failed;
    const bitmap = await createImageBitmap(source);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'detect', id, bitmap, width, height, views, opts }, [bitmap]);
    });
  }

  _answer(data) {
    const p = this.pending.get(data.id);
    if (!p) return;
    this.pending.delete(data.id);
    if (data.error) { p.reject(new Error(data.error)); return; }
    this.lastViews = data.views;
    this.lastMs = data.ms;
    p.resolve(data.dets);
  }

  _fail(err) {
    this.failed = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  terminate() {
    this.worker.terminate();
    this._fail(new Error('face detector worker stopped'));
  }
}
