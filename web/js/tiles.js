// Where the face detector looks: the geometry of its passes, no TensorFlow here.
//
// A *view* is the square of source pixels one detector pass sees: canvas pixel p (0..size) is
// source pixel (x0 + p / scale, y0 + p / scale). The live default is one letterboxed view of the
// whole frame; the thorough mode adds overlapping tiles at a finer scale, because BlazeFace needs
// a face about 20 input pixels wide (about 40 in dim light) and letterboxing a 640x480 frame into
// 256x256 shrinks a 40 px face to 16.

/** The whole frame, scaled to fit and centred (padding on the short side). */
export function letterboxView(srcW, srcH, size) {
  const scale = size / Math.max(srcW, srcH);
  const x0 = -(size / scale - srcW) / 2, y0 = -(size / scale - srcH) / 2;
  return { x0, y0, scale, size, inner: { left: false, top: false, right: false, bottom: false } };
}

/**
 * Starts of windows `win` long that cover [0, len) with neighbours overlapping by at least
 * `overlap`, spread evenly (first at 0, last ending at len). One centred window when it covers all.
 */
export function spans(len, win, overlap) {
  if (len <= win) return [(len - win) / 2];
  const n = Math.ceil((len - overlap) / Math.max(1, win - overlap));
  if (n <= 1) return [0];
  const step = (len - win) / (n - 1);
  return Array.from({ length: n }, (_, i) => i * step);
}

/**
 * Square tiles of `size` input pixels at `scale` (input px per source px) covering srcW x srcH,
 * neighbours overlapping by at least `overlap` source pixels, so any face up to about that wide
 * lies whole inside one tile. `inner` marks the sides that cut the frame (a face touching such a
 * side is cut and is found whole by the neighbour).
 */
export function tileViews(srcW, srcH, size, { scale, overlap }) {
  const win = size / scale;
  const xs = spans(srcW, win, overlap), ys = spans(srcH, win, overlap);
  const views = [];
  for (const y0 of ys) {
    for (const x0 of xs) {
      views.push({
        x0, y0, scale, size, tile: true,
        inner: { left: x0 > 0.5, top: y0 > 0.5, right: x0 + win < srcW - 0.5, bottom: y0 + win < srcH - 0.5 },
      });
    }
  }
  return views;
}

/** Source -> canvas drawImage arguments for a view, clipped to the source (the rest stays padding). */
export function drawRect(view, srcW, srcH) {
  const { x0, y0, scale, size } = view;
  const sx = Math.max(0, x0), sy = Math.max(0, y0);
  const ex = Math.min(srcW, x0 + size / scale), ey = Math.min(srcH, y0 + size / scale);
  return {
    sx, sy, sw: ex - sx, sh: ey - sy,
    dx: (sx - x0) * scale, dy: (sy - y0) * scale, dw: (ex - sx) * scale, dh: (ey - sy) * scale,
  };
}

/** Canvas pixel -> source pixel. */
export function toSource(view, px, py) {
  return [view.x0 + px / view.scale, view.y0 + py / view.scale];
}

/**
 * Is a box (source pixels) cut by one of the view's inner sides? `margin` is in input pixels:
 * BlazeFace's box ends inside the face's outline, so a box that stops a few input pixels short
 * of the edge may still belong to a face that continues past it.
 */
export function cutByView(view, box, margin = 2) {
  const { x0, y0, scale, size, inner } = view;
  const m = margin / scale, end = size / scale;
  return (inner.left && box.x < x0 + m) || (inner.top && box.y < y0 + m)
    || (inner.right && box.x + box.w > x0 + end - m) || (inner.bottom && box.y + box.h > y0 + end - m);
}
