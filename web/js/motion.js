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

/** The video's current frame as a WebCodecs VideoFrame (the caller closes it), or null. */
export function videoFrameOf(source) {
  if (typeof VideoFrame !== 'function' || typeof HTMLVideoElement !== 'function' || !(source instanceof HTMLVideoElement)) return null;
  try {
    return new VideoFrame(source);
  } catch {
    return null; // (no frame yet)
  }
}

const PLANAR = new Set(['I420', 'I420A', 'I422', 'I444', 'NV12']);

/**
 * grabGray() of a video's current frame without drawing it: the luma plane of `frame`
 * (videoFrameOf(source); camera frames are I420 or NV12) is the grey picture already, averaged
 * down over f x f blocks. Drawing the video onto a canvas converted the whole frame to RGB first,
 * the dearest step of a followed frame (4.4 of 9.5 ms here). Falls back to grabGray() without a
 * frame or for any other layout (RGB formats, rotated or cropped frames); `fromFrame` says which
 * it was, and `planes` holds the frame's pixels as copied (valid until the next call). Luma here is the camera's (video range), not grabGray's: only compare frames grabbed
 * the same way (one stream gives the same path every frame).
 */
export async function grabGrayFast(source, srcW, srcH, canvas, frame, maxSide = 320) {
  const r = frame && frame.visibleRect;
  if (!frame || !PLANAR.has(frame.format) || r.width !== srcW || r.height !== srcH || (frame.rotation || 0) !== 0 || frame.flip) {
    return grabGray(source, srcW, srcH, canvas, maxSide);
  }
  let y, buf, layout;
  try {
    // The copy's buffer is the canvas's to reuse (a new 460 KB one per frame was garbage to collect).
    const size = frame.allocationSize();
    if (!canvas.lumaBuffer || canvas.lumaBuffer.length < size) canvas.lumaBuffer = new Uint8Array(size);
    buf = canvas.lumaBuffer;
    layout = await frame.copyTo(buf);
    [y] = layout;
  } catch {
    return grabGray(source, srcW, srcH, canvas, maxSide); // (a browser quirk)
  }
  const f = Math.max(1, Math.ceil(Math.max(srcW, srcH) / maxSide));
  const w = Math.floor(srcW / f), h = Math.floor(srcH / f);
  const gray = new Uint8Array(w * h), area = f * f;
  if (f === 2) { // the usual case (640x480; 1280x720 is f = 4): unrolled, about 4x faster
    for (let j = 0, o = 0; j < h; j++) {
      const r0 = y.offset + 2 * j * y.stride, r1 = r0 + y.stride;
      for (let k = 0; k < 2 * w; k += 2) gray[o++] = (buf[r0 + k] + buf[r0 + k + 1] + buf[r1 + k] + buf[r1 + k + 1]) >> 2;
    }
  } else {
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) {
        let acc = 0;
        for (let dy = 0; dy < f; dy++) {
          const row = y.offset + (j * f + dy) * y.stride + i * f;
          for (let dx = 0; dx < f; dx++) acc += buf[row + dx];
        }
        gray[j * w + i] = acc / area;
      }
    }
  }
  // The planes as copied, for a detection request (the detector's worker converts them: yuv.js).
  // fullRange: luma 0-255 (some phone cameras) rather than the usual video range 16-235.
  const fullRange = !!(frame.colorSpace && frame.colorSpace.fullRange);
  const planes = { buffer: buf, size: frame.allocationSize(), format: frame.format, layout, width: srcW, height: srcH, fullRange };
  return { gray, width: w, height: h, scale: 1 / f, fromFrame: true, planes };
}

/** 12x12 thumbnail of `box` (source px) in a grey frame (grabGray's): each cell its pixels' mean. */
export function boxThumbnail(frame, box) {
  const { gray, width: W, height: H, scale: s } = frame;
  const out = new Float32Array(144);
  const x0 = box.x * s, y0 = box.y * s, cw = (box.w * s) / 12, ch = (box.h * s) / 12;
  for (let j = 0; j < 12; j++) {
    const ya = Math.min(H - 1, Math.max(0, Math.floor(y0 + j * ch)));
    const yb = Math.min(H, Math.max(ya + 1, Math.floor(y0 + (j + 1) * ch)));
    for (let i = 0; i < 12; i++) {
      const xa = Math.min(W - 1, Math.max(0, Math.floor(x0 + i * cw)));
      const xb = Math.min(W, Math.max(xa + 1, Math.floor(x0 + (i + 1) * cw)));
      let acc = 0;
      for (let yy = ya; yy < yb; yy++) for (let xx = xa; xx < xb; xx++) acc += gray[yy * W + xx];
      out[j * 12 + i] = acc / ((yb - ya) * (xb - xa));
    }
  }
  return out;
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
