// Face alignment: rotate so the eyes are horizontal, square crop with a FER2013-like tight margin,
// grayscale. Works on any drawable source (video, image, canvas, ImageBitmap).

/** Crop geometry from a detection: {cx, cy, side, angle} in source pixels / radians. */
export function cropGeometry(det, { eyeScale = 2.6, eyeY = 0.38 } = {}) {
  const [ax, ay] = det.keypoints[0];
  const [bx, by] = det.keypoints[1];
  let angle = Math.atan2(by - ay, bx - ax);
  if (angle > Math.PI / 2) angle -= Math.PI; // keep the face upright whatever the eye order
  if (angle < -Math.PI / 2) angle += Math.PI;
  const eyeDist = Math.hypot(bx - ax, by - ay);
  // Eye distance shrinks when the head turns: never crop smaller than the detector's box.
  const side = Math.max(eyeScale * eyeDist, 1.0 * Math.max(det.box.w, det.box.h));
  const ex = (ax + bx) / 2, ey = (ay + by) / 2;
  // Centre of the crop: the eye midpoint sits at eyeY of the height, measured along the rotated axis.
  const down = (0.5 - eyeY) * side;
  return { cx: ex - Math.sin(angle) * down, cy: ey + Math.cos(angle) * down, side, angle };
}

/** Draw the aligned square crop of `det` from `source` into a new (or given) canvas of size x size. */
export function drawAligned(source, det, size, canvas = null, opts = {}) {
  const g = cropGeometry(det, opts);
  const c = canvas || document.createElement('canvas');
  c.width = c.height = size;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.save();
  ctx.fillStyle = '#808080';
  ctx.fillRect(0, 0, size, size);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.translate(size / 2, size / 2);
  ctx.scale(size / g.side, size / g.side);
  ctx.rotate(-g.angle);
  ctx.translate(-g.cx, -g.cy);
  ctx.drawImage(source, 0, 0);
  ctx.restore();
  return c;
}

/** RGBA ImageData -> Uint8Array grey levels (ITU-R BT.601 luma, like PIL's "L"). */
export function toGray(imageData) {
  const d = imageData.data, n = imageData.width * imageData.height;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2]);
  return out;
}

/** Average-pool a size*f square grey image down by an integer factor f. */
export function downsample(gray, size, f) {
  if (f === 1) return gray;
  const s = size / f, out = new Uint8Array(s * s);
  for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) {
    let acc = 0;
    for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) acc += gray[(y * f + dy) * size + x * f + dx];
    out[y * s + x] = Math.round(acc / (f * f));
  }
  return out;
}

/**
 * Aligned grey crop for the classifier: {gray: Uint8Array(size*size), size, canvas}.
 * Rendered at 4x then average-pooled, so a big face in a big frame does not alias.
 */
export function alignFace(source, det, size = 48, scratch = null) {
  const f = 4;
  const canvas = drawAligned(source, det, size * f, scratch);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const big = toGray(ctx.getImageData(0, 0, size * f, size * f));
  return { gray: downsample(big, size * f, f), size, canvas };
}

// Luma code -> grey level (rounded like toGray's) for cameras' video range and for full range.
const FULL_RANGE = Uint8Array.from({ length: 256 }, (_, i) => i);
const VIDEO_RANGE = Uint8Array.from({ length: 256 }, (_, i) => Math.max(0, Math.min(255, Math.round(((i - 16) * 255) / 219))));

/**
 * alignFace() read from a camera frame's luma plane instead of the drawn video: `planes` as
 * motion.js grabGrayFast copied them ({buffer, layout: [{offset, stride}, ...], width, height,
 * fullRange}). The same geometry, the same 4x supersampling (bilinear samples at the 4x grid's
 * pixel centres, average-pooled), the same grey outside the frame. Drawing the video converted
 * the whole frame to RGB and read pixels back for every crop: the page thread's dearest step
 * (dearer still where the read-back comes from a phone's GPU); this samples the 48x48 crop's
 * 36,864 points in the bytes the page already holds. Luma is grey already: BT.601 luma equals
 * the grey of the RGB the frame converts to, bar clipping, once video range (16-235) is
 * stretched to 0-255 (as yuv.js does for the detector).
 */
export function alignFaceLuma(planes, det, size = 48) {
  const g = cropGeometry(det);
  const f = 4, S = size * f, step = g.side / S;
  const { buffer: px, width: W, height: H } = planes;
  const { offset, stride } = planes.layout[0];
  const cos = Math.cos(g.angle) * step, sin = Math.sin(g.angle) * step;
  const lut = planes.fullRange ? FULL_RANGE : VIDEO_RANGE;
  const acc = new Uint16Array(size * size);
  for (let v = 0; v < S; v++) {
    const dv = v + 0.5 - S / 2, row = (v >> 2) * size;
    // Source position of the 4x grid's pixel centre (u, v), in pixel-index space (centres at integers).
    let sx = g.cx - sin * dv + cos * (0.5 - S / 2) - 0.5, sy = g.cy + cos * dv + sin * (0.5 - S / 2) - 0.5;
    for (let u = 0; u < S; u++, sx += cos, sy += sin) {
      let grey = 128;
      if (sx >= -0.5 && sy >= -0.5 && sx < W - 0.5 && sy < H - 0.5) {
        const x = Math.max(0, sx), y = Math.max(0, sy);
        const x0 = Math.min(W - 1, x | 0), y0 = Math.min(H - 1, y | 0);
        const x1 = Math.min(W - 1, x0 + 1), y1 = Math.min(H - 1, y0 + 1), fx = x - x0, fy = y - y0;
        const r0 = offset + y0 * stride, r1 = offset + y1 * stride;
        const top = px[r0 + x0] + (px[r0 + x1] - px[r0 + x0]) * fx;
        const bottom = px[r1 + x0] + (px[r1 + x1] - px[r1 + x0]) * fx;
        grey = lut[Math.round(top + (bottom - top) * fy)];  // (off the frame: 128, alignFace's #808080)
      }
      acc[row + (u >> 2)] += grey;
    }
  }
  const gray = new Uint8Array(size * size);
  for (let i = 0; i < gray.length; i++) gray[i] = Math.round(acc[i] / (f * f));
  return { gray, size };
}

/** Grey pixels -> a canvas (for showing the crop or uploading it as PNG). */
export function grayToCanvas(gray, size, canvas = null) {
  const c = canvas || document.createElement('canvas');
  c.width = c.height = size;
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = gray[i];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
