// Cheap face following between full detector passes: BlazeFace's graph is fixed at 256x256, so
// re-detecting inside a small region costs as much as a full-frame pass. Instead each tracked face
// is found again by matching its grey patch from the last detector frame (the key frame) against
// a half-resolution grey copy of the current frame: sum of absolute differences over a ~16x16
// grid of samples, coarse-to-fine search. Translation only; the next detector pass fixes size,
// rotation and keypoints.

/** Grey copy of `source` with its longer side `maxSide`: {gray, width, height, scale}. */
export function grabGray(source, srcW, srcH, canvas, maxSide = 320) {
  const scale = Math.min(1, maxSide / Math.max(srcW, srcH));
  const w = Math.round(srcW * scale), h = Math.round(srcH * scale);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, srcW, srcH, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  const gray = new Uint8Array(w * h);
  // Integer BT.601 luma: exactness does not matter here, speed does.
  for (let i = 0, j = 0; i < gray.length; i++, j += 4) gray[i] = (77 * d[j] + 150 * d[j + 1] + 29 * d[j + 2]) >> 8;
  return { gray, width: w, height: h, scale };
}

/** Mean |a - b| over the sample grid of the key box at offset (ox, oy) in grey pixels. */
function cost(key, cur, x0, y0, n, step, ox, oy, limit) {
  const W = key.width, H = key.height;
  let acc = 0, count = 0;
  for (let j = 0; j < n; j++) {
    const y = y0 + j * step, yc = y + oy;
    if (y < 0 || y >= H || yc < 0 || yc >= H) continue;
    const rk = y * W, rc = yc * W;
    for (let i = 0; i < n; i++) {
      const x = x0 + i * step, xc = x + ox;
      if (x < 0 || x >= W || xc < 0 || xc >= W) continue;
      acc += Math.abs(key.gray[rk + x] - cur.gray[rc + xc]);
      count++;
    }
    if (acc > limit * n * n) return Infinity; // already worse than the best so far
  }
  return count >= (n * n) / 2 ? acc / count : Infinity;
}

/**
 * Where did the face in `keyBox` (source pixels, on frame `key`) go in frame `cur`? The search
 * is centred on `guess` (source-pixel offset of the last estimate from keyBox) and reaches
 * `reach` x the box width either way. Returns {dx, dy, cost} in source pixels / grey levels.
 */
export function follow(key, cur, keyBox, guess = { dx: 0, dy: 0 }, { grid = 16, reach = 0.35 } = {}) {
  const s = key.scale;
  const side = Math.min(keyBox.w, keyBox.h) * s * 0.8; // inner 80 %: less background
  const step = Math.max(1, Math.floor(side / grid));
  const n = Math.max(4, Math.floor(side / step));
  const x0 = Math.round((keyBox.x + keyBox.w / 2) * s - (n * step) / 2);
  const y0 = Math.round((keyBox.y + keyBox.h / 2) * s - (n * step) / 2);
  const r = Math.max(2, Math.ceil(reach * keyBox.w * s));
  const gx = Math.round(guess.dx * s), gy = Math.round(guess.dy * s);
  let best = { ox: gx, oy: gy, c: cost(key, cur, x0, y0, n, step, gx, gy, Infinity) };
  const scan = (cx, cy, radius, stride) => {
    for (let oy = cy - radius; oy <= cy + radius; oy += stride) {
      for (let ox = cx - radius; ox <= cx + radius; ox += stride) {
        const c = cost(key, cur, x0, y0, n, step, ox, oy, best.c);
        if (c < best.c) best = { ox, oy, c };
      }
    }
  };
  scan(gx, gy, r, 2);
  scan(best.ox, best.oy, 1, 1);
  // Sub-pixel: the vertex of a parabola through the costs either side of the best offset (one
  // grey pixel is 2 camera pixels; whole-pixel steps would make the aligned crop jitter).
  const at = (ox, oy) => cost(key, cur, x0, y0, n, step, ox, oy, Infinity);
  const vertex = (cm, c0, cp) => {
    const d = cm - 2 * c0 + cp;
    return Number.isFinite(d) && d > 0 ? Math.max(-0.5, Math.min(0.5, (cm - cp) / (2 * d))) : 0;
  };
  const fx = vertex(at(best.ox - 1, best.oy), best.c, at(best.ox + 1, best.oy));
  const fy = vertex(at(best.ox, best.oy - 1), best.c, at(best.ox, best.oy + 1));
  return { dx: (best.ox + fx) / s, dy: (best.oy + fy) / s, cost: best.c };
}

/** A detection moved by (dx, dy): box and keypoints shifted, everything else kept. */
export function shiftDetection(det, dx, dy) {
  const keypoints = det.keypoints.map(([x, y]) => [x + dx, y + dy]);
  return {
    ...det, box: { ...det.box, x: det.box.x + dx, y: det.box.y + dy },
    keypoints, rightEye: keypoints[0], leftEye: keypoints[1],
  };
}
