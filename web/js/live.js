// The live camera's per-frame work, scheduled so a frame costs less than the full pipeline:
//  * the detector (BlazeFace, a fixed 256x256 graph: the dearest step) runs on the whole frame
//    only every few frames, at least every `detectEveryMs`, whenever no face is tracked and
//    whenever following a face fails; in between each face is followed by patch matching
//    (motion.js, ~1 ms) so its box keeps up with the motion;
//  * a face the detector misses on one full pass but patch matching still finds stays (at most
//    `rescueMisses` passes in a row): with passes every few frames, one flaky detection would
//    otherwise hide a face for several frames;
//  * a face is re-classified only when its aligned crop changed since its last classification
//    (compared at 12x12, so a sub-pixel shift of the crop does not count but a mouth opening
//    does), or after `reclassifyEvery` frames; otherwise its smoothed probabilities stand. At
//    most `classifyBudget` faces per frame (fewer on detector frames) go to the classifier, the
//    unlabelled and the most changed first, so five faces do not cost five classifications.
// Still photos do not come here: they take pipeline.analyse (detect + classify everything).
import { iou } from './detector.js';
import { grabGray, follow, shiftDetection } from './motion.js';
import { faceCrop } from './pipeline.js';
import { Tracker } from './tracker.js';

export const LIVE_DEFAULTS = {
  detectEvery: 5, // full detector pass at least every 5th processed frame ...
  detectEveryMs: 400, // ... and at least every 400 ms: a new face shows up within ~1/2 s
  lostCost: 24, // mean grey-level difference above which a followed face counts as lost
  rescueMisses: 1, // full passes in a row that may miss a face still found by patch matching
  reclassifyEvery: 6, // a face is re-classified at least every 6th processed frame ...
  cropChange: 4, // ... or when its 12x12 thumbnail changed more than this (mean |diff|, grey levels)
  classifyBudget: 2, // faces classified per frame at most (1 on frames where the detector ran)
};

// `?reuse=0`: every frame gets the full detector and every face its classification, nothing
// reused: the like-for-like row next to peers measured without their caching (fer-hybrid bench).
export const EVERY_FRAME = { detectEvery: 1, reclassifyEvery: 0, classifyBudget: Infinity };

/** The schedule the URL asks for: LIVE_DEFAULTS, or EVERY_FRAME with `?reuse=0`. */
export function liveOptions(search = '') {
  return new URLSearchParams(search).get('reuse') === '0' ? { ...EVERY_FRAME } : {};
}

/** 12x12 average-pooled thumbnail of a square grey crop (side divisible by 12). */
export function thumbnail(gray, side) {
  const f = side / 12, out = new Float32Array(144);
  for (let y = 0; y < side; y++) {
    const row = Math.floor(y / f) * 12;
    for (let x = 0; x < side; x++) out[row + Math.floor(x / f)] += gray[y * side + x];
  }
  for (let i = 0; i < 144; i++) out[i] /= f * f;
  return out;
}

/** Mean absolute difference of two arrays of the same length. */
export function cropDifference(a, b) {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc += Math.abs(a[i] - b[i]);
  return acc / a.length;
}

export class LivePipeline {
  constructor(detector, classifier, opts = {}) {
    Object.assign(this, { detector, classifier }, LIVE_DEFAULTS, opts);
    this.tracker = new Tracker();
    this.grayCanvas = document.createElement('canvas');
    this.scratch = document.createElement('canvas');
    this.reset();
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
   * last key frame belongs to the other stream, yet the faces still in view keep their tracks.
   */
  redetect() {
    this.key = null; // grey copy of the last frame the detector saw
    this.sinceFull = Infinity;
    this.lastFullAt = -Infinity;
  }

  _fullDue(now) {
    const visible = this.tracker.tracks.filter((t) => t.missed === 0);
    return !this.key || !visible.length || this.sinceFull + 1 >= this.detectEvery
      || now - this.lastFullAt >= this.detectEveryMs;
  }

  /** Track t followed into frame `cur` (a detection), or null when it is lost. */
  _followOne(t, cur) {
    const m = follow(this.key, cur, t.keyDet.box, t.offset);
    if (!(m.cost <= this.lostCost)) return null;
    t.offset = { dx: m.dx, dy: m.dy };
    return shiftDetection(t.keyDet, m.dx, m.dy);
  }

  /** Followed detections for every visible track, or null when one is lost. */
  _follow(cur) {
    const dets = [];
    for (const t of this.tracker.tracks) {
      if (t.missed !== 0 || !t.keyDet) continue;
      const d = this._followOne(t, cur);
      if (!d) return null;
      dets.push(d);
    }
    return dets.length ? dets : null;
  }

  /** Visible tracks the detector just missed but patch matching still finds (see rescueMisses). */
  _rescue(dets, cur) {
    const out = [];
    for (const t of this.tracker.tracks) {
      if (t.missed !== 0 || !t.keyDet || (t.detectorMisses || 0) >= this.rescueMisses) continue;
      if (dets.some((d) => iou(d.box, t.box) >= this.tracker.minIou)) continue;
      const d = this._followOne(t, cur);
      if (d) out.push({ ...d, rescued: true });
    }
    return out;
  }

  /**
   * One camera frame. Returns {tracks, full, detectMs, classifyMs, classified}: the visible
   * tracks ({id, box, probs, lowlight, det, ...}), whether the detector ran, its time (or the
   * following time), the classifier's time and how many faces it classified.
   */
  async process(source, width, height, now = performance.now()) {
    const t0 = performance.now();
    const cur = grabGray(source, width, height, this.grayCanvas);
    let dets = this._fullDue(now) ? null : this._follow(cur);
    const full = !dets;
    if (full) {
      dets = await this.detector.detect(source, width, height);
      if (this.key) dets = dets.concat(this._rescue(dets, cur));
      this.key = cur;
      this.sinceFull = 0;
      this.lastFullAt = now;
    } else {
      this.sinceFull++;
    }
    const tracks = this.tracker.update(dets);
    if (full) {
      // New key frame: follow from here; a track the detector missed cannot be followed.
      for (const t of this.tracker.tracks) {
        t.keyDet = t.missed === 0 ? t.det : null;
        t.offset = { dx: 0, dy: 0 };
        t.detectorMisses = t.missed === 0 && t.det.rescued ? (t.detectorMisses || 0) + 1 : 0;
      }
    }
    const t1 = performance.now();
    const c = this.classifier;
    const size = c ? c.height : 48;
    const due = [];
    for (const t of tracks) {
      const { gray, lowlight } = faceCrop(source, t.det, size, this.scratch, c);
      t.lowlight = lowlight;
      if (!c) continue;
      const thumb = thumbnail(gray, size);
      const last = t.classified;
      if (last) last.age++;
      // Priority: never classified, then overdue, then by how much the face changed.
      const change = last ? cropDifference(thumb, last.thumb) : Infinity;
      const overdue = last && last.age >= this.reclassifyEvery;
      if (!last || overdue || change > this.cropChange) due.push({ t, gray, thumb, rank: overdue ? 1e6 + change : change });
    }
    due.sort((a, b) => b.rank - a.rank);
    const todo = due.slice(0, full ? Math.max(1, this.classifyBudget - 1) : this.classifyBudget);
    if (todo.length) {
      const generation = this.generation;
      const probs = await c.classify(todo.map((d) => d.gray));
      if (generation !== this.generation) return { tracks, full, detectMs: t1 - t0, classifyMs: 0, classified: 0 };
      todo.forEach(({ t, thumb }, i) => {
        this.tracker.smooth(t, probs[i]);
        t.classified = { thumb, age: 0 };
      });
    }
    const t2 = performance.now();
    return { tracks, full, detectMs: t1 - t0, classifyMs: t2 - t1, classified: todo.length };
  }
}
