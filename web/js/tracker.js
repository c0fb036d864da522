// Keeps identities of faces across frames (greedy IoU matching) and smooths each face's
// probabilities with an exponential moving average so the label does not flicker.
import { iou } from './detector.js';

export class Tracker {
  constructor({ alpha = 0.4, minIou = 0.2, maxMissed = 4 } = {}) {
    Object.assign(this, { alpha, minIou, maxMissed });
    this.tracks = [];
    this.nextId = 1;
  }

  reset() { this.tracks = []; }

  /** dets: [{box, probs, ...}] for this frame. Returns the visible tracks [{id, box, probs, hits, missed, det}]. */
  update(dets) {
    const pairs = [];
    this.tracks.forEach((t, ti) => dets.forEach((d, di) => {
      const v = iou(t.box, d.box);
      if (v >= this.minIou) pairs.push([v, ti, di]);
    }));
    pairs.sort((a, b) => b[0] - a[0]);
    const usedT = new Set(), usedD = new Set();
    for (const [, ti, di] of pairs) {
      if (usedT.has(ti) || usedD.has(di)) continue;
      usedT.add(ti); usedD.add(di);
      const t = this.tracks[ti], d = dets[di];
      t.box = d.box; t.det = d; t.missed = 0; t.hits++;
      if (d.probs) this.smooth(t, d.probs);
    }
    this.tracks.forEach((t, ti) => { if (!usedT.has(ti)) t.missed++; });
    dets.forEach((d, di) => {
      if (!usedD.has(di)) this.tracks.push({ id: this.nextId++, box: d.box, det: d, probs: d.probs ? Float32Array.from(d.probs) : null, hits: 1, missed: 0 });
    });
    this.tracks = this.tracks.filter((t) => t.missed <= this.maxMissed);
    return this.tracks.filter((t) => t.missed === 0);
  }

  /** Fold a new classification of `track` into its smoothed probabilities. */
  smooth(track, probs) {
    track.probs = track.probs ? track.probs.map((p, k) => (1 - this.alpha) * p + this.alpha * probs[k]) : Float32Array.from(probs);
  }
}
