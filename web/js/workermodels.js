// The page's side of modelworker.js: WorkerDetector has FaceDetector's detectViews() and
// WorkerClassifier Ensemble's classify(), but the work runs in a worker, so awaiting it does not
// hold the main thread (live.js does not even await them: it follows the faces it has meanwhile
// and takes the answers when they come). `async: true` tells live.js so. start() rejects where a
// browser lacks module workers, OffscreenCanvas or createImageBitmap, or where the worker cannot
// start TF.js; the page then keeps that model on its main thread, as before.

export const WORKER_URL = new URL('./modelworker.js', import.meta.url);

/** Can this browser run the models in a worker? (The detector's worker needs all three.) */
export function workerSupported(g = globalThis) {
  return typeof g.Worker === 'function' && typeof g.OffscreenCanvas === 'function'
    && typeof g.createImageBitmap === 'function';
}

/** A started modelworker.js hosting `role`: {worker, ready} (ready: its 'ready' message). */
async function startWorker(role, { files, tfjs, timeoutMs = 60000, url = WORKER_URL }) {
  if (!workerSupported()) throw new Error('no module worker, OffscreenCanvas or createImageBitmap here');
  const worker = new Worker(url, { type: 'module' });
  try {
    const ready = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the ${role} worker did not start in time`)), timeoutMs);
      worker.onmessage = ({ data }) => {
        clearTimeout(timer);
        if (data.type === 'ready') resolve(data); else reject(new Error(data.message));
      };
      // A browser without module workers fails here (the script's `import` is a syntax error).
      worker.onerror = (e) => { clearTimeout(timer); e.preventDefault?.(); reject(new Error(e.message || 'worker error')); };
      worker.postMessage({ type: 'init', role, tfjs: new URL(tfjs, location.href).href, files });
    });
    return { worker, ready };
  } catch (err) {
    worker.terminate();
    throw err;
  }
}

/** Requests to a started worker and their answers, by id; a dead worker rejects them all. */
class ModelWorker {
  constructor(worker, role) {
    Object.assign(this, { worker, role });
    this.async = true;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.nextId = 1;
    this.lastMs = null; // the worker's time for the last answer (ms)
    this.failed = null; // set when the worker died: every request since rejects with it
    worker.onmessage = ({ data }) => this._answer(data);
    worker.onerror = (e) => this._fail(new Error(`the ${role} worker failed: ${e.message || 'error'}`));
  }

  _request(msg, transfer = []) {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    this.worker.postMessage({ ...msg, id }, transfer);
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  _answer(data) {
    const p = this.pending.get(data.id);
    if (!p) return;
    this.pending.delete(data.id);
    if (data.error) p.reject(new Error(data.error));
    else { this.lastMs = data.ms ?? null; p.resolve(data); }
  }

  _fail(err) {
    this.failed = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  terminate() {
    this.worker.terminate();
    this._fail(new Error(`the ${this.role} worker stopped`));
  }
}

export class WorkerDetector extends ModelWorker {
  /**
   * A started, warmed-up detector worker built from `files` (FaceDetector.download()'s bytes,
   * so the model is not fetched twice); `tfjs`: the vendored TF.js folder's URL.
   */
  static async start(options) {
    const { worker, ready } = await startWorker('detector', options);
    const d = new WorkerDetector(worker, 'detector');
    d.size = ready.size;
    d.lastViews = 0;
    return d;
  }

  /**
   * Detections of `views` (tiles.js) of `source`, as FaceDetector's: a video, canvas or image is
   * copied into an ImageBitmap, {yuv, format, layout, width, height} (a camera frame's planes)
   * goes as it is; either is transferred to the worker, not cloned.
   */
  async detectViews(source, width, height, views, opts = {}) {
    if (this.failed) throw this.failed;
    let msg;
    if (source && source.yuv) {
      // A camera frame's planes (live.js): transferred, converted in the worker (yuv.js).
      msg = [{ type: 'detect', yuv: source, width, height, views, opts }, [source.yuv]];
    } else {
      // A video is drawn here first, so the worker gets the frame the page sees (browsers where the
      // camera's planes are not at hand: RGB frames, no WebCodecs).
      let pixels = source;
      if (typeof HTMLVideoElement === 'function' && source instanceof HTMLVideoElement) {
        const c = this.canvas || (this.canvas = document.createElement('canvas'));
        if (c.width !== width || c.height !== height) { c.width = width; c.height = height; }
        c.getContext('2d').drawImage(source, 0, 0, width, height);
        pixels = c;
      }
      const bitmap = await createImageBitmap(pixels);
      msg = [{ type: 'detect', bitmap, width, height, views, opts }, [bitmap]];
    }
    const r = await this._request(...msg);
    this.lastViews = r.views;
    return r.dets;
  }
}

export class WorkerClassifier extends ModelWorker {
  /** A started worker with the ensemble of `files` (Ensemble.download()'s) built and warmed up. */
  static async start(options) {
    const { worker, ready } = await startWorker('classifier', options);
    return Object.assign(new WorkerClassifier(worker, 'classifier'), WorkerClassifier._shape(ready));
  }

  static _shape({ labels, height, width, equalizeBelow }) { return { labels, height, width, equalizeBelow }; }

  /** Probabilities of each grey crop (Ensemble.classify's), computed in the worker. */
  async classify(crops) {
    if (!crops.length) return [];
    return (await this._request({ type: 'classify', crops })).probs;
  }

  /** Another ensemble (a model switch): the worker frees the old one first. */
  async load(files) {
    Object.assign(this, WorkerClassifier._shape(await this._request({ type: 'load', files })));
    return this;
  }
}
