// BlazeFace (MediaPipe's face detector, the 256x256 "back" model as converted by Human 3.3.6) with
// our own decoder: 896 SSD anchors (16x16x2 + 8x8x6), box = anchor + offsets in input pixels,
// sigmoid scores, 6 keypoints, greedy NMS. Input: 256x256 RGB scaled to [-1, 1].
// Default: one pass over the letterboxed frame (the live loop's budget). {thorough: true}: that
// pass plus overlapping tiles at a finer scale (tiles.js), merged by NMS, for small faces.

export const DETECTOR_URL = '/static/vendor/human-3.3.6/models/blazeface.json';
import { letterboxView, tileViews, drawRect, toSource, cutByView } from './tiles.js';

export const KEYPOINTS = ['rightEye', 'leftEye', 'nose', 'mouth', 'rightEar', 'leftEar'];

export function generateAnchors(size = 256) {
  const specs = [{ stride: size / 16, n: 2 }, { stride: size / 8, n: 6 }];
  const anchors = [];
  for (const { stride, n } of specs) {
    const rows = Math.floor((size + stride - 1) / stride);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < rows; x++) {
        for (let k = 0; k < n; k++) anchors.push([stride * (x + 0.5), stride * (y + 0.5)]);
      }
    }
  }
  return anchors;
}

export function iou(a, b) {
  const x1 = Math.max(a.x, b.x), y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.w, b.x + b.w), y2 = Math.min(a.y + a.h, b.y + b.h);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}

/** Greedy non-maximum suppression over [{box, score}] (highest score wins). */
export function nms(dets, iouThreshold = 0.3, maxFaces = 20) {
  const sorted = [...dets].sort((a, b) => b.score - a.score);
  const kept = [];
  for (const d of sorted) {
    if (kept.length >= maxFaces) break;
    if (kept.every((k) => iou(k.box, d.box) <= iouThreshold)) kept.push(d);
  }
  return kept;
}

/**
 * A canvas of w x h: a DOM one on a page, an OffscreenCanvas in a worker (modelworker.js runs
 * this detector off the main thread, where there is no document).
 */
export function makeCanvas(w, h) {
  if (typeof document !== 'undefined') {
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    return c;
  }
  return new OffscreenCanvas(w, h);
}

const sigmoid = (v) => 1 / (1 + Math.exp(-v));

// The thorough mode's tile levels: `scale` input px per source px, `overlap` in source px (the
// widest face a level must see whole; wider ones are the letterboxed pass's, which finds every
// face >= 96 px). Scale 0.8 puts a 40 px face at 32 input px: 6 tiles on 640x480, 7 passes with
// the letterboxed one. Scale 1 (12 tiles) found no more photo faces; 0.65 (4 tiles) missed some
// dark 40 px ones. Tiles' threshold 0.65: 0.6 doubled the face-free frames given a box, 0.7 lost
// dark 40 px faces. Measured with tests/bench_detector.py; see models/detector.md.
export const THOROUGH = {
  levels: [{ scale: 0.8, overlap: 112 }],
  scoreThreshold: 0.65,
  normalize: null,  // 'gamma' | 'local': brighten dark tiles (see brighten())
  maxTiles: 24,  // a large photo gets coarser tiles rather than hundreds of passes
};

// A still photo's detect() options (Photo mode): the thorough scan, and every face it finds
// checked twice: keypoints laid out like a face's, and found again by a pass centred on it with
// the tiles' threshold. On the detector bench it kept every photo face of 48-128 px, cut the
// face-free frames given a box from 6 to 3 of 60 and kept 78 % of the blurry LFW faces (79 %
// before); the live view's 0.75 left 2 of 60 but kept only 65 % of them, and a photo has no next
// frame to find a face again (models/detector_photo.md).
export const STILL = Object.freeze({ thorough: true, plausible: true, verify: [], verifyScore: THOROUGH.scoreThreshold });

/** Tile levels for a frame, coarsened (scale and overlap shrunk alike) until at most maxTiles. */
export function thoroughViews(srcW, srcH, size, { levels, maxTiles } = THOROUGH) {
  const views = [letterboxView(srcW, srcH, size)];
  const coarsest = size / Math.max(srcW, srcH);
  for (const level of levels) {
    let { scale, overlap } = level;
    let tiles = tileViews(srcW, srcH, size, { scale, overlap });
    while (tiles.length > maxTiles && scale > coarsest * 1.25) {
      scale *= 0.8;
      tiles = tileViews(srcW, srcH, size, { scale, overlap });
    }
    if (scale > coarsest * 1.25) views.push(...tiles);  // else the letterbox pass already is this level
  }
  return views;
}

/**
 * Are a detection's keypoints laid out like a face's? In the frame of the eye line (origin
 * between the eyes, unit = eye distance): eyes at least 0.3 of the box wide, nose and mouth
 * within 0.45 of the middle, the mouth 0.6-1.5 below the eyes and below the nose, each ear
 * outside its eye. On 581 photo faces of tests/scenes.py (32-128 px, +-30 deg, every light) at
 * score >= 0.65 it kept 580; on face-free pictures it drops the skewed boxes (a coffee cup's
 * rim, star fields), not the face-like ones (a cell picture's): those need verify (below).
 */
export function plausibleFace(det) {
  const [re, le, nose, mouth, rear, lear] = det.keypoints;
  const vx = le[0] - re[0], vy = le[1] - re[1];
  const d = Math.hypot(vx, vy);
  if (!(d > 0) || d < 0.3 * det.box.w) return false;
  const mx = (re[0] + le[0]) / 2, my = (re[1] + le[1]) / 2;
  // (along the eye line, across it downwards), in eye distances
  const at = ([x, y]) => [((x - mx) * vx + (y - my) * vy) / (d * d), ((y - my) * vx - (x - mx) * vy) / (d * d)];
  const [nx, ny] = at(nose), [ox, oy] = at(mouth), [rx] = at(rear), [lx] = at(lear);
  return Math.abs(nx) <= 0.45 && Math.abs(ox) <= 0.45 && oy >= 0.6 && oy <= 1.5 && ny < oy
    && rx <= -0.4 && lx >= 0.4;
}

/**
 * The view that takes a second look at a candidate box: centred on it, at the scale that makes
 * it about `width` input pixels wide (at most 2x the source: a small face upscaled), so that
 * the face sits where no pass of the first look put it. A face is found again there; a texture
 * that looked like one to a single pass usually is not.
 */
export function verifyView(box, size, width = 80, maxScale = 2) {
  const scale = Math.min(maxScale, width / Math.max(1, box.w));
  const half = size / (2 * scale);
  return { x0: box.x + box.w / 2 - half, y0: box.y + box.h / 2 - half, scale, size, tile: true,
    inner: { left: false, top: false, right: false, bottom: false } };
}

/**
 * Gamma-brighten a dark view (RGB 0..1, [h, w, 3]) so its mean light comes up to about 0.45,
 * gamma in [0.4, 1] (bright views untouched). 'gamma': one gamma for the view; 'local': per
 * pixel from the light around it (a face in shadow on a bright background). In-graph, no sync.
 */
function brighten(tf, x, mode) {
  const gammaOf = (m) => tf.clipByValue(tf.div(Math.log(0.45), tf.log(tf.clipByValue(m, 0.01, 0.99))), 0.4, 1);
  if (mode === 'gamma') return tf.pow(x, gammaOf(tf.mean(x)));
  const [h, w] = x.shape;
  const lum = tf.expandDims(tf.mean(x, 2, true), 0);
  const coarse = tf.avgPool(tf.avgPool(lum, 8, 8, 'same'), 5, 1, 'same');
  const around = tf.squeeze(tf.image.resizeBilinear(coarse, [h, w]), [0]);
  return tf.pow(x, gammaOf(around));
}

export class FaceDetector {
  constructor({ url = DETECTOR_URL, scoreThreshold = 0.6, iouThreshold = 0.3, maxFaces = 20 } = {}) {
    Object.assign(this, { url, scoreThreshold, iouThreshold, maxFaces });
    this.size = 256;
    this.anchors = generateAnchors(this.size);
    this.canvas = null;
    this.model = null;
    this.lastViews = 0;  // passes the last detect() ran (for benchmarks and the stats line)
  }

  /**
   * The model's files (model.json and weights) as bytes: no tensor, so no TF.js backend needed
   * yet; the live page downloads them while its backend starts and passes them to load().
   */
  static async download(url = DETECTOR_URL) {
    return globalThis.tf.io.http(url).load(); // (async: a missing tf rejects rather than throws)
  }

  /** Build the model on the current backend, from download()'s `files` or else from this.url. */
  async load(files = null) {
    const tf = globalThis.tf;
    this.model = files ? tf.loadGraphModelSync(files) : await tf.loadGraphModel(this.url);
    const shape = this.model.inputs[0].shape;
    if (shape && shape[1] > 0) this.size = shape[1];
    this.anchors = generateAnchors(this.size);
    this.canvas = makeCanvas(this.size, this.size);
    this.ctx = this.canvas.getContext('2d', { willReadFrequently: true });
    return this;
  }

  /** Warm-up run on a blank frame (first inference compiles kernels). */
  async warmup() {
    this.ctx.fillStyle = '#000';
    this.ctx.fillRect(0, 0, this.size, this.size);
    await this._run();
  }

  async _run(normalize = null) {
    const tf = globalThis.tf;
    const outs = tf.tidy(() => {
      const px = tf.browser.fromPixels(this.canvas);
      const x = normalize
        ? tf.expandDims(tf.sub(tf.mul(brighten(tf, tf.div(tf.cast(px, 'float32'), 255), normalize), 2), 1), 0)
        : tf.expandDims(tf.sub(tf.div(tf.cast(px, 'float32'), 127.5), 1), 0);
      let res = this.model.execute(x);
      if (!Array.isArray(res)) res = [res];
      return res;
    });
    const arrays = await Promise.all(outs.map((t) => t.data()));
    const shapes = outs.map((t) => t.shape);
    tf.dispose(outs);
    return { arrays, shapes };
  }

  /** One pass: draw the view into the input canvas, run, decode to source pixels. */
  async _pass(source, srcW, srcH, view, scoreThreshold, normalize = null) {
    const S = this.size;
    this.ctx.fillStyle = '#000';
    this.ctx.fillRect(0, 0, S, S);
    const r = drawRect(view, srcW, srcH);
    if (r.sw > 0 && r.sh > 0) this.ctx.drawImage(source, r.sx, r.sy, r.sw, r.sh, r.dx, r.dy, r.dw, r.dh);
    const { arrays, shapes } = await this._run(normalize);
    return this._decode(arrays, shapes, (px, py) => toSource(view, px, py), scoreThreshold);
  }

  _decode(arrays, shapes, toSrc, scoreThreshold) {
    // Outputs: scores [1,512,1], [1,384,1] and regressors [1,512,16], [1,384,16] (any order);
    // the 512-anchor (stride 16) group comes first, matching generateAnchors().
    const byN = {};
    shapes.forEach((s, i) => {
      const n = s[1], c = s[2];
      byN[n] = byN[n] || {};
      byN[n][c === 1 ? 'scores' : 'regs'] = arrays[i];
      byN[n].c = Math.max(byN[n].c || 0, c === 1 ? 0 : c);
    });
    const groups = Object.keys(byN).map(Number).sort((a, b) => b - a);
    const dets = [];
    let base = 0;
    for (const n of groups) {
      const { scores, regs, c } = byN[n];
      for (let i = 0; i < n; i++) {
        const score = sigmoid(Math.max(-80, Math.min(80, scores[i])));
        if (score < scoreThreshold) continue;
        const [ax, ay] = this.anchors[base + i];
        const r = i * c;
        const cx = regs[r] + ax, cy = regs[r + 1] + ay, w = regs[r + 2], h = regs[r + 3];
        const [x0, y0] = toSrc(cx - w / 2, cy - h / 2);
        const [x1, y1] = toSrc(cx + w / 2, cy + h / 2);
        const keypoints = [];
        for (let k = 0; k < 6; k++) keypoints.push(toSrc(regs[r + 4 + 2 * k] + ax, regs[r + 5 + 2 * k] + ay));
        dets.push({ box: { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }, score, keypoints });
      }
      base += n;
    }
    return dets;
  }

  /**
   * Detect every face in `source` (video, image, canvas, ImageBitmap) of size srcW x srcH.
   * Returns [{box: {x, y, w, h}, score, keypoints: [[x, y] x 6], rightEye, leftEye}] in source pixels,
   * sorted by score. rightEye = the subject's right eye (image left on an unmirrored image).
   * opts.thorough: also scan overlapping tiles at a finer scale (several passes; for stills and
   * periodic full scans). opts.levels / opts.scoreThreshold (the tiles') / opts.normalize
   * override THOROUGH's.
   */
  async detect(source, srcW, srcH, opts = {}) {
    const views = opts.thorough
      ? thoroughViews(srcW, srcH, this.size, { ...THOROUGH, ...(opts.levels ? { levels: opts.levels } : {}) })
      : [letterboxView(srcW, srcH, this.size)];
    return this.detectViews(source, srcW, srcH, views, opts);
  }

  /**
   * Run the given views (tiles.js; e.g. a few of thoroughViews() per frame, to spread a full
   * scan over several frames) and merge their detections by NMS. Same output as detect().
   */
  async detectViews(source, srcW, srcH, views, opts = {}) {
    // The letterboxed pass keeps the default threshold (thorough = the default's detections plus
    // the tiles'); tiles have their own: more passes over more texture, more chances of a false face.
    const tileThreshold = opts.scoreThreshold ?? THOROUGH.scoreThreshold;
    const normalize = opts.normalize ?? THOROUGH.normalize;
    const dets = [];
    for (const view of views) {
      const found = view.tile
        ? await this._pass(source, srcW, srcH, view, tileThreshold, normalize)
        : await this._pass(source, srcW, srcH, view, this.scoreThreshold);
      // A face cut by a tile's inner side is seen whole by the neighbouring tile (the overlap).
      for (const d of found) if (!cutByView(view, d.box) && (!opts.plausible || plausibleFace(d))) dets.push(d);
    }
    this.lastViews = views.length;
    let kept = nms(dets, opts.iouThreshold ?? this.iouThreshold, this.maxFaces).filter((d) => d.box.w > 4 && d.box.h > 4);
    if (opts.verify) kept = await this._verify(source, srcW, srcH, kept, opts.verify, opts.verifyScore ?? tileThreshold);
    return kept.map((d) => ({ ...d, rightEye: d.keypoints[0], leftEye: d.keypoints[1] }));
  }

  /**
   * Keep a detection overlapping none of the `known` boxes (faces already tracked) only if a
   * second pass centred on it (verifyView) finds it again: the live loop's guard against
   * textures that one tile took for a face, which would otherwise stay boxed for seconds.
   */
  async _verify(source, srcW, srcH, dets, known, threshold) {
    const out = [];
    for (const d of dets) {
      if (known.some((k) => iou(k, d.box) >= 0.2)) { out.push(d); continue; }
      const found = await this._pass(source, srcW, srcH, verifyView(d.box, this.size), threshold);
      this.lastViews++;
      if (found.some((f) => iou(f.box, d.box) >= 0.4)) out.push(d);
    }
    return out;
  }
}
