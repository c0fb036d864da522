// Geometry of the overlay, in CSS pixels (pure: no DOM, tested in tests/test_e2e_overlay.py).
// The video and the photo are shown `object-fit: contain`, so a frame pixel is `scale` CSS
// pixels and the picture sits centred in its element; text drawn in frame pixels would shrink
// on a phone, so the tags are laid out here, in the units the reader sees.

/** Where a `frameW` x `frameH` picture shown `object-fit: contain` in a `boxW` x `boxH` element lands. */
export function containRect(boxW, boxH, frameW, frameH) {
  const scale = Math.min(boxW / frameW, boxH / frameH);
  const w = frameW * scale, h = frameH * scale;
  return { x: (boxW - w) / 2, y: (boxH - h) / 2, w, h, scale };
}

/** A face box in frame pixels -> CSS pixels inside `rect` (mirrored like a front camera's
 * preview when `mirror`), clipped to the visible picture (BlazeFace boxes may overhang it). */
export function toView(box, rect, frameW, mirror = false) {
  const fx = mirror ? frameW - box.x - box.w : box.x;
  const x0 = Math.max(rect.x, rect.x + fx * rect.scale);
  const y0 = Math.max(rect.y, rect.y + box.y * rect.scale);
  const x1 = Math.min(rect.x + rect.w, rect.x + (fx + box.w) * rect.scale);
  const y1 = Math.min(rect.y + rect.h, rect.y + (box.y + box.h) * rect.scale);
  return { x: x0, y: y0, w: Math.max(0, x1 - x0), h: Math.max(0, y1 - y0) };
}

export function overlapArea(a, b) {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

// Where a tag may sit against its box, best first: on the box's top edge, under it, and only
// then inside it (over the forehead, last over the mouth, which is what the label is about).
const SIDES = ['above', 'below', 'inside-top', 'inside-bottom'];
const SIDE_COST = { above: 0, below: 0.6, 'inside-top': 3, 'inside-bottom': 4 };
// Covering another face is what made six faces unreadable: it costs more than any side choice.
const COVER_OTHER_COST = 40;
const COVER_OWN_COST = 2;
const STICKY_BONUS = 0.8; // keep last frame's side: no tag hopping above/below as boxes jitter

function sideY(side, box, h, gap) {
  if (side === 'above') return box.y - h;
  if (side === 'below') return box.y + box.h;
  if (side === 'inside-top') return box.y + gap;
  return box.y + box.h - h - gap;
}

/**
 * Greedy tag layout. boxes: face boxes (CSS px); sizes[i]: the tag variants of face i, best
 * first ([{w, h}], e.g. "3 happy 92%" then just "3"); bounds: the visible picture {x, y, w, h}.
 * Every tag stays inside `bounds`, touches or overlaps its own box horizontally (so it reads
 * as that box's tag), and never overlaps another tag; among such places the cheapest covers
 * the fewest other faces and stays closest to the box. Faces are placed top to bottom.
 * prefer[i]: the side face i used last time (optional).
 * Returns per face {x, y, w, h, side, variant} or {variant: -1} when no variant fits anywhere
 * (the face list still names it).
 */
export function placeTags(boxes, sizes, bounds, { gap = 2, prefer = [] } = {}) {
  const out = boxes.map(() => ({ variant: -1 }));
  const placed = [];
  const order = boxes.map((_, i) => i).sort((a, b) => boxes[a].y - boxes[b].y || boxes[a].x - boxes[b].x);
  const bx0 = bounds.x, by0 = bounds.y, bx1 = bounds.x + bounds.w, by1 = bounds.y + bounds.h;
  const eps = 0.5; // sub-pixel rounding must not turn a fit into a miss
  for (const i of order) {
    const box = boxes[i];
    for (let v = 0; v < sizes[i].length && out[i].variant < 0; v++) {
      const { w, h } = sizes[i][v];
      if (w > bounds.w + eps || h > bounds.h + eps) continue;
      // Horizontal range that keeps the tag over its box by at least `minOv` pixels.
      const minOv = Math.min(16, box.w / 2, w / 2);
      const lo = Math.max(bx0, box.x + minOv - w), hi = Math.min(bx1 - w, box.x + box.w - minOv);
      const clampX = (x) => (lo <= hi ? Math.min(hi, Math.max(lo, x)) : Math.min(bx1 - w, Math.max(bx0, x)));
      let best = null;
      for (const side of SIDES) {
        let y = sideY(side, box, h, gap);
        if (y < by0 - eps || y + h > by1 + eps) continue;
        y = Math.min(by1 - h, Math.max(by0, y)); // the sub-pixel slack, taken back
        const xs = [box.x + box.w / 2 - w / 2, box.x, box.x + box.w - w];
        for (const p of placed) {
          if (p.y < y + h && y < p.y + p.h) xs.push(p.x + p.w + gap, p.x - gap - w);
        }
        for (const x0 of xs) {
          const r = { x: clampX(x0), y, w, h };
          if (placed.some((p) => overlapArea(p, r) > eps)) continue;
          let cost = SIDE_COST[side] + Math.abs(r.x + w / 2 - (box.x + box.w / 2)) / Math.max(w, 1);
          if (prefer[i] === side) cost -= STICKY_BONUS;
          boxes.forEach((o, j) => {
            const a = overlapArea(r, o) / (w * h);
            cost += a * (j === i ? COVER_OWN_COST : COVER_OTHER_COST);
          });
          if (!best || cost < best.cost) best = { ...r, side, cost };
        }
      }
      if (best) {
        const { cost, ...rect } = best;
        out[i] = { ...rect, variant: v };
        placed.push(rect);
      }
    }
  }
  return out;
}
