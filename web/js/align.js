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
