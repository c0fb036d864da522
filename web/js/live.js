// The live camera's per-frame work, scheduled so a frame costs less than the full pipeline:
//  * the detector (BlazeFace, a fixed 256x256 graph: the dearest step) runs on the whole frame
//    only every few frames, at least every `detectEveryMs`, whenever no face is tracked and
//    whenever following a face fails; in between each face is followed by patch matching
//    (motion.js, ~1 ms) so its box keeps up with the motion;
//  * a face the detector misses on one full pass but patch matching still finds stays (at most
//    `rescueMisses` passes in a row): with passes every few frames, one flaky detection would
//    otherwise hide a face for several frames;
//  * a face is re-classified only when its aligned crop changed since its last classification
//    (its box in the grey frame compared at 12x12, so a sub-pixel shift does not count but a
//    mouth opening does), or after `reclassifyEvery` frames; otherwise its smoothed probabilities stand. At
//    most `classifyBudget` faces per frame (fewer on detector frames) go to the classifier, the
//    unlabelled and the most changed first, so five faces do not cost five classifications.
// Still photos do not come here: they take pipeline.analyse (detect + classify everything).
import { iou, thoroughViews } from './detector.js';
import { letterboxView } from './tiles.js';
import { grabGrayFast, videoFrameOf, follow, shiftDetection, boxThumbnail } from './motion.js';
import { YUV_FORMATS } from './yuv.js';
import { faceCrop } from './pipeline.js';
import { Tracker } from './tracker.js';

export const LIVE_DEFAULTS = {
  detectEvery: 5, // full detector pass at least every 5th processed frame ...
  detectEveryMs: 400, // ... and at least every 400 ms: a new face shows up within ~1/2 s
  lostCost: 24, // mean grey-level difference above which a followed face counts as lost
  rescueMisses: 1, // full passes in a row that may miss a face still found by patch matching
  reclassifyEvery: 6, // a face is re-classified at least every 6th processed frame ...
  cropChange: 4, // ... or when its 12x12 thumbnail changed more than this (mean |diff|, grey levels)
  classifyBudget: 2, // faces classified per frame at most (1 on frames where the detector ran here)
  // With a worker detector each request also scans this many of the thorough mode's tiles, in
  // turn (null: 1 in a worker, 0 on the main thread), so small faces are found within a cycle.
  tilesPerRequest: null,
  // The letterboxed pass counts as having looked for a face this wide (input px) or wider: it
  // finds every face from 96 px of a 640 px frame (38 input px) in any light, and misses many
  // smaller ones, which only the tiles can confirm.
  letterboxMinFace: 38,
  plausible: true, // drop detections whose keypoints are not laid out like a face's (detector.js)
  // With a worker detector, a face no track holds yet is kept only if a second pass centred on
  // it finds it again (detector.js, verify): one tile's false face would otherwise stay boxed
  // for a whole cycle of tiles.
  verify: true,
  // The second look's score threshold: 0.65 (the tiles') left 3 of 60 face-free frames boxed,
  // 0.75 2, 0.85 none but lost dark 48-128 px faces (tests/bench_detector.py, live variants).
  verifyScore: 0.75,
};

// `?reuse=0`: every frame gets the full detector and every face its classification, nothing
// reused: the like-for-like row next to peers measured without their caching (fer-hybrid bench).
export const EVERY_FRAME = { detectEvery: 1, reclassifyEvery: 0, classifyBudget: Infinity };

/** The schedule the URL asks for: LIVE_DEFAULTS, or EVERY_FRAME with `?reuse=0`. */
export function liveOptions(search = '') {
  return new URLSearchParams(search).get('reuse') === '0' ? { ...EVERY_FRAME } : {};
}

/** Mean absolute difference of two arrays of the same length. */
export function cropDifference(a, b) {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc += Math.abs(a[i] - b[i]);
  return acc / a.length;
}

export class LivePipeline {
  /**
   * `detector`: a FaceDetector (the pass runs inside process(), on the page's thread) or a
   * WorkerDetector (`async`: sent off and taken a frame or more later); likewise `classifier`,
   * an Ensemble or a WorkerClassifier. `opts.fallback` / `opts.classifierFallback`: the
   * FaceDetector / Ensemble to go on with should a worker die.
   */
  constructor(detector, classifier, opts = {}) {
    Object.assign(this, { detector, classifier }, LIVE_DEFAULTS, opts);
    this.tracker = new Tracker();
    this.grayCanvas = document.createElement('canvas');
    this.scratch = document.createElement('canvas');
    this.epoch = 0;
    this.tileCursor = 0;
    this.requests = 0; // detections asked for since load (each: the letterboxed pass + its tiles)
    this.inFlight = null; // the request the worker is working on
    this.ready = null; // its answer, once it came: {req, dets, ms}
    this.reset();
  }

  /** Thorough tiles added to each detection request (0 on the main thread: each costs a pass there). */
  get tilesEach() {
    return this.tilesPerRequest ?? (this.detector.async ? 1 : 0);
  }

  /**
   * Classify with `classifier` from now on (null: none while another model loads). Every face's
   * probabilities are forgotten, so no label mixes two models, and one classification still
   * running with the old model is dropped when it returns.
   */
  setClassifier(classifier) {
    this.classifier = classifier;
    this.generation = (this.generation || 0) + 1;
    for (const t of this.tracker.tracks) { t.probs = null; t.classified = null; }
  }

  reset() {
    this.tracker.reset();
    this.redetect();
  }

  /**
   * Run the detector on the next frame but keep the tracked faces: after a camera switch the
   * key frames belong to the other stream, yet the faces still in view keep their tracks (held
   * where they were until the detector places them again).
   */
  redetect() {
    this.epoch++; // a detection of the old stream still in flight is dropped when it returns
    this.ready = null;
    this.hold = true;
    this.sinceRequest = Infinity;
    this.lastRequestAt = -Infinity;
  }

  /** A detection is due by the schedule (lost or missing faces aside). */
  _timeDue(now) {
    return this.hold || !this.tracker.tracks.some((t) => t.missed === 0)
      || this.sinceRequest + 1 >= this.detectEvery || now - this.lastRequestAt >= this.detectEveryMs;
  }

  /** Track t followed from its key frame into `cur`: {det, anchor}, or null when it is lost. */
  _followOne(t, cur) {
    const m = follow(t.key, cur, t.keyDet.box, t.offset);
    if (!(m.cost <= this.lostCost)) return null;
    const offset = { dx: m.dx, dy: m.dy };
    return { det: shiftDetection(t.keyDet, m.dx, m.dy), anchor: { key: t.key, keyDet: t.keyDet, offset } };
  }

  /**
   * Every visible track followed into `cur`: {items: [{det, anchor, misses}], lost}. A track that
   * cannot be followed sets `lost` (a detection is then due); with a worker detector it is held
   * where it was meanwhile (its detection is frames away), else it is dropped (the detector runs
   * on this very frame).
   */
  _followAll(cur) {
    const items = [];
    let lost = false;
    for (const t of this.tracker.tracks) {
      if (t.missed !== 0 || !t.key) continue;
      const f = this.hold ? null : this._followOne(t, cur);
      if (f) items.push({ ...f, misses: t.detectorMisses || 0 });
      else {
        lost = true;
        if (this.detector.async) items.push({ det: t.det, anchor: { key: t.key, keyDet: t.keyDet, offset: t.offset }, misses: t.detectorMisses || 0 });
      }
    }
    return { items, lost };
  }

  /** The views of the next request: the letterboxed frame, plus the next tiles of the thorough scan in turn. */
  _views(width, height) {
    const size = this.detector.size || 256;
    const views = [letterboxView(width, height, size)];
    const n = this.tilesEach;
    if (n > 0) {
      const key = `${width}x${height}x${size}`;
      if (!this.tiles || this.tiles.key !== key) this.tiles = { key, views: thoroughViews(width, height, size).filter((v) => v.tile) };
      const tiles = this.tiles.views;
      for (let i = 0; i < Math.min(n, tiles.length); i++) views.push(tiles[this.tileCursor++ % tiles.length]);
    }
    return views;
  }

  _request(cur, width, height, now) {
    this.sinceRequest = 0;
    this.lastRequestAt = now;
    this.requests++;
    return { key: cur, views: this._views(width, height), epoch: this.epoch };
  }

  /** Send a request to the worker; its answer waits in this.ready for the next frame. */
  _send(source, width, height, req) {
    this.inFlight = req;
    // New faces get a second look (detector.js, verify); the tracked ones were confirmed already.
    const verify = this.verify ? this.tracker.tracks.map((t) => t.box) : null;
    this.detector.detectViews(source, width, height, req.views, { plausible: this.plausible, verify, verifyScore: this.verifyScore }).then(
      (dets) => { if (req.epoch === this.epoch) this.ready = { req, dets, ms: this.detector.lastMs }; },
      (err) => {
        // The worker died (or one pass failed): the main thread's detector takes over, if given.
        console.warn('face detector worker failed', err);
        if (this.fallback && this.detector.failed) this.detector = this.fallback;
      },
    ).finally(() => { if (this.inFlight === req) this.inFlight = null; });
  }

  /** Did request `req` look where box is, closely enough that missing a face there counts? */
  _covers(req, box) {
    for (const v of req.views) {
      if (!v.tile) {
        if (box.w * v.scale >= this.letterboxMinFace) return true;
      } else {
        const end = v.size / v.scale;
        if (box.x >= v.x0 && box.y >= v.y0 && box.x + box.w <= v.x0 + end && box.y + box.h <= v.y0 + end) return true;
      }
    }
    return false;
  }

  /**
   * A detection's answer applied to frame `cur`: each detection (made on the request's frame)
   * followed from there to `cur`; each visible track it missed followed from its own key frame
   * instead, unless the request looked where it is and the detector already missed it there
   * `rescueMisses` times (then it is let go).
   */
  _apply({ req, dets }, cur) {
    const items = [];
    for (const d of dets) {
      if (req.key === cur) { items.push({ det: d, anchor: { key: cur, keyDet: d, offset: { dx: 0, dy: 0 } }, misses: 0 }); continue; }
      const m = follow(req.key, cur, d.box);
      if (!(m.cost <= this.lostCost)) continue; // gone since that frame: the next request finds it
      items.push({ det: shiftDetection(d, m.dx, m.dy), anchor: { key: req.key, keyDet: d, offset: { dx: m.dx, dy: m.dy } }, misses: 0 });
    }
    for (const t of this.tracker.tracks) {
      if (t.missed !== 0 || !t.key) continue;
      if (items.some((it) => iou(it.det.box, t.box) >= this.tracker.minIou)) continue;
      const misses = (t.detectorMisses || 0) + (this._covers(req, t.box) ? 1 : 0);
      if (misses > this.rescueMisses) continue;
      const f = this.hold ? null : this._followOne(t, cur);
      if (f) items.push({ ...f, det: { ...f.det, rescued: true }, misses });
    }
    this.hold = false;
    return items;
  }

  /**
   * A frame with no answer waiting: follow the faces, and send (worker) or run (main thread) a
   * detection when one is due -> {result (the main thread's detection, else null), followed}.
   */
  async _detectOrFollow(source, width, height, now, cur) {
    const worker = !!this.detector.async;
    const timeDue = this._timeDue(now);
    let followed = null;
    // On the main thread a due detection replaces following (it places every face anyway).
    if (worker || !timeDue) followed = this._followAll(cur);
    const due = timeDue || !followed || followed.lost || !followed.items.length;
    if (!due || this.inFlight) {
      this.sinceRequest++;
      return { result: null, followed };
    }
    const req = this._request(cur, width, height, now);
    if (worker) {
      // The camera's own planes, copied for the worker to convert (yuv.js), else the video itself.
      const p = cur.planes;
      const yuv = p && YUV_FORMATS.has(p.format)
        ? { yuv: p.buffer.slice(0, p.size).buffer, format: p.format, layout: p.layout, width: p.width, height: p.height, fullRange: p.fullRange } : null;
      this._send(yuv || source, width, height, req);
      return { result: null, followed };
    }
    const t = performance.now();
    const opts = { plausible: this.plausible };
    const dets = req.views.length === 1 ? await this.detector.detect(source, width, height, opts)
      : await this.detector.detectViews(source, width, height, req.views, opts);
    return { result: { req, dets, ms: performance.now() - t }, followed };
  }

  /**
   * One camera frame. Returns {tracks, full, detectMs, classifyMs, classified}: the visible
   * tracks ({id, box, probs, lowlight, det, ...}), whether a detection was applied (run on this
   * frame, or with a worker, come back from an earlier one), its time (the worker's, or else
   * the time this frame spent finding faces), the classifier's time and how many faces it
   * classified.
   */
  async process(source, width, height, now = performance.now()) {
    const t0 = performance.now();
    // One snapshot of the camera frame for the grey copy and a detection request alike (the
    // worker gets a copy of its planes: no RGB conversion here).
    const frame = videoFrameOf(source);
    const worker = !!this.detector.async;
    let cur, result = this.ready, followed = null;
    this.ready = null;
    try {
      cur = await grabGrayFast(source, width, height, this.grayCanvas, frame);
      if (!result) ({ result, followed } = await this._detectOrFollow(source, width, height, now, cur));
    } finally {
      if (frame) frame.close();
    }
    const full = !!result;
    const items = full ? this._apply(result, cur) : followed.items;
    const anchors = new Map(items.map((it) => [it.det, it]));
    const tracks = this.tracker.update(items.map((it) => it.det));
    for (const t of tracks) {
      const it = anchors.get(t.det);
      if (!it) continue;
      Object.assign(t, it.anchor);
      t.detectorMisses = it.misses;
    }
    const t1 = performance.now();
    const c = this.classifier;
    const size = c ? c.height : 48;
    const due = [];
    // The aligned crop (the classifier's input) is made only for the faces it goes to: whether a
    // face changed is judged on the box's 12x12 thumbnail in the grey frame, made anyway.
    const busy = c && c.async && this.classifying; // a batch is out: nothing goes this frame
    for (const t of tracks) {
      if (!c) { t.lowlight = faceCrop(source, t.det, size, this.scratch, null, cur.planes).lowlight; continue; }
      const thumb = boxThumbnail(cur, t.box);
      const last = t.classified;
      if (last) last.age++;
      if (busy) continue;
      // Priority: never classified, then overdue, then by how much the face changed.
      const change = last ? cropDifference(thumb, last.thumb) : Infinity;
      const overdue = last && last.age >= this.reclassifyEvery;
      if (!last || overdue || change > this.cropChange) due.push({ t, thumb, rank: overdue ? 1e6 + change : change });
    }
    due.sort((a, b) => b.rank - a.rank);
    // A frame that ran the detector here classifies fewer faces; a worker's detection cost this frame nothing.
    // (A face whose classification is out stays due meanwhile; it is not sent twice: one batch at a time.)
    const budget = full && !worker ? Math.max(1, this.classifyBudget - 1) : this.classifyBudget;
    const todo = due.slice(0, budget);
    for (const d of todo) {
      // From the frame's luma plane when grabGrayFast copied it (no RGB conversion, no read-back).
      const { gray, lowlight } = faceCrop(source, d.t.det, size, this.scratch, c, cur.planes);
      d.gray = gray;
      d.t.lowlight = lowlight;
    }
    const detectMs = full ? result.ms ?? t1 - t0 : t1 - t0;
    let classified = 0, classifyMs = 0;
    if (c && c.async) {
      // A worker's: sent off (one batch at a time), folded in when it comes back, a frame or more later.
      const answered = this.classifiedNow;
      this.classifiedNow = null;
      if (answered) ({ classified, ms: classifyMs } = answered);
      if (todo.length && !this.classifying) this._classifyAsync(c, todo);
    } else if (todo.length) {
      const generation = this.generation;
      const probs = await c.classify(todo.map((d) => d.gray));
      if (generation !== this.generation) return { tracks, full, detectMs, followMs: t1 - t0, classifyMs: 0, classified: 0 };
      todo.forEach(({ t, thumb }, i) => {
        this.tracker.smooth(t, probs[i]);
        t.classified = { thumb, age: 0 };
      });
      classified = todo.length;
      classifyMs = performance.now() - t1;
    }
    return { tracks, full, detectMs, followMs: t1 - t0, classifyMs, classified };
  }

  /** Classify `todo` in the worker; the answer goes to its tracks (if they and the model are still the same). */
  _classifyAsync(c, todo) {
    const generation = this.generation;
    this.classifying = true;
    c.classify(todo.map((d) => d.gray)).then((probs) => {
      if (generation !== this.generation) return;
      todo.forEach(({ t, thumb }, i) => {
        this.tracker.smooth(t, probs[i]);
        t.classified = { thumb, age: 0 };
      });
      this.classifiedNow = { classified: todo.length, ms: c.lastMs };
    }, (err) => {
      console.warn('classification failed', err);
      if (this.classifierFallback && c.failed && this.classifier === c) this.setClassifier(this.classifierFallback);
    }).finally(() => { this.classifying = false; });
  }
}
