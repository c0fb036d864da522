// The small numbers that tie a box on the picture to its row in the face list ("Face 3").
// Tracker ids only grow (a face that left and came back is a new id), so they are not shown;
// a face keeps its number while it is tracked, a face the tracker lost for a moment and found
// again under a new id near the same place gets its number back, and a freed number goes to
// the next new face.

/** Indices of `boxes` in reading order: rows top to bottom, left to right within a row (two
 * faces are in one row when their centres are less than half a face height apart). */
export function readingOrder(boxes) {
  const cy = (b) => b.y + b.h / 2;
  const byY = boxes.map((_, i) => i).sort((a, b) => cy(boxes[a]) - cy(boxes[b]));
  const rows = [];
  for (const i of byY) {
    const row = rows[rows.length - 1];
    const ref = row && boxes[row[0]];
    if (row && cy(boxes[i]) - cy(ref) < Math.max(ref.h, boxes[i].h) / 2) row.push(i);
    else rows.push([i]);
  }
  return rows.flatMap((row) => row.sort((a, b) => boxes[a].x - boxes[b].x));
}

/** Boxes as the viewer sees them: a mirrored preview shows the frame's right side on the left. */
function shown(faces, width, mirror) {
  return faces.map((f) => (mirror ? { ...f.box, x: width - f.box.x - f.box.w } : f.box));
}

/** A still photo: faces numbered 1..n in reading order; returns copies with `number`, in that order. */
export function numberByPosition(faces, { width = 0, mirror = false } = {}) {
  return readingOrder(shown(faces, width, mirror)).map((i, k) => ({ ...faces[i], number: k + 1 }));
}

/** Same face, most likely: centres closer than half the larger box's width. */
function near(a, b) {
  const dx = a.x + a.w / 2 - (b.x + b.w / 2), dy = a.y + a.h / 2 - (b.y + b.h / 2);
  return Math.hypot(dx, dy) < Math.max(a.w, b.w) / 2;
}

/** Live video: stable numbers per tracker id. */
export class FaceNumbers {
  /** keep: updates an id may be missing before its number is freed (a blink keeps it). */
  constructor({ keep = 15 } = {}) {
    this.keep = keep;
    this.reset();
  }

  reset() { this.byId = new Map(); } // id -> {number, missed, box}

  /** tracks: [{id, box, ...}] visible this frame. Returns copies with `number`, sorted by it;
   * faces new in this frame get the number of a face just lost where they are, else the
   * smallest free numbers in reading order. */
  assign(tracks, { width = 0, mirror = false } = {}) {
    const seen = new Map(tracks.map((t) => [t.id, t]));
    for (const [id, e] of this.byId) {
      if (seen.has(id)) Object.assign(e, { missed: 0, box: seen.get(id).box });
      else if (++e.missed > this.keep) this.byId.delete(id);
    }
    const used = new Set([...this.byId.values()].map((e) => e.number));
    let next = 1;
    for (const i of readingOrder(shown(tracks, width, mirror))) {
      const { id, box } = tracks[i];
      if (this.byId.has(id)) continue;
      const lost = [...this.byId].find(([, e]) => e.missed > 0 && near(e.box, box));
      if (lost) {
        this.byId.delete(lost[0]);
        this.byId.set(id, { number: lost[1].number, missed: 0, box });
        continue;
      }
      while (used.has(next)) next++;
      used.add(next);
      this.byId.set(id, { number: next, missed: 0, box });
    }
    return tracks.map((t) => ({ ...t, number: this.byId.get(t.id).number }))
      .sort((a, b) => a.number - b.number);
  }
}
