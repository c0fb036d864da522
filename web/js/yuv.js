// A camera frame's pixels as the camera gave them (I420 or NV12: a luma plane and subsampled
// chroma), turned into RGBA here, in the detector's worker. The page copies the planes it read
// for its grey frame anyway (motion.js) and hands them over: converting the frame to RGB on the
// page's thread (createImageBitmap of the video) was the dearest part of a request frame, and
// plain bytes need no browser to support transferring VideoFrames to a worker.

/** Formats yuvToRgba() reads (I420A's alpha plane is ignored). */
export const YUV_FORMATS = new Set(['I420', 'I420A', 'NV12']);

/**
 * {data, format, layout: [{offset, stride}, ...], width, height, fullRange} -> ImageData-shaped
 * RGBA (Uint8ClampedArray, width*height*4). BT.601: video range (16-235), as most cameras
 * deliver it, or full range (0-255) when the frame's colour space says so.
 */
export function yuvToRgba({ data, format, layout, width, height, fullRange = false }, out = null) {
  const px = new Uint8Array(data);
  const rgba = out && out.length === width * height * 4 ? out : new Uint8ClampedArray(width * height * 4);
  const [Y, P1, P2] = layout;
  const nv12 = format === 'NV12';
  // Fixed-point (x256) coefficients: video range stretches luma by 255/219 and chroma by 255/224.
  const [ky, kyo, krv, kgu, kgv, kbu] = fullRange ? [256, 0, 359, 88, 183, 454] : [298, 16, 409, 100, 208, 516];
  for (let j = 0, o = 0; j < height; j++) {
    const yRow = Y.offset + j * Y.stride, c = j >> 1;
    const uRow = P1.offset + c * P1.stride, vRow = nv12 ? uRow + 1 : P2.offset + c * P2.stride;
    for (let i = 0; i < width; i++, o += 4) {
      const k = nv12 ? 2 * (i >> 1) : i >> 1;
      const y = ky * (px[yRow + i] - kyo) + 128, u = px[uRow + k] - 128, v = px[vRow + k] - 128;
      rgba[o] = (y + krv * v) >> 8;
      rgba[o + 1] = (y - kgu * u - kgv * v) >> 8;
      rgba[o + 2] = (y + kbu * u) >> 8;
      rgba[o + 3] = 255;
    }
  }
  return rgba;
}
