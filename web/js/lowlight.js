// Per-face low-light normalisation of a grey crop: histogram equalisation when the crop is dark.
// The thresholds were chosen on FER2013 PublicTest with the shipped model
// (tests/bench_lowlight_rule.py): equalising only below mean 40 and never stretching costs
// nothing on clean crops (the former 70 / contrast-stretch-below-110 rule cost 0.3-0.8 points)
// and keeps the step's gain in the dark. The stretch branch stays available as an option.
// The threshold is the models' (manifest `ensemble.equalize_below`, passed in as darkMean):
// an ensemble with members trained on dark images scores better on dark crops left alone.

export function stats(gray) {
  const hist = new Uint32Array(256);
  let sum = 0;
  for (const v of gray) { hist[v]++; sum += v; }
  const n = gray.length;
  const pct = (p) => {
    const target = p * n;
    let acc = 0;
    for (let i = 0; i < 256; i++) { acc += hist[i]; if (acc >= target) return i; }
    return 255;
  };
  return { mean: sum / n, p2: pct(0.02), p98: pct(0.98), hist };
}

// The threshold for models whose manifest names none (contract/manifest.py's default).
export const DARK_MEAN = 40;

/** Decide what (if anything) to do: 'equalize' | 'stretch' | 'none'. */
export function decide(s, { darkMean = DARK_MEAN, minRange = 0 } = {}) {
  if (s.mean < darkMean) return 'equalize';
  if (s.p98 - s.p2 < minRange) return 'stretch';
  return 'none';
}

export function stretch(gray, lo, hi) {
  const out = new Uint8Array(gray.length);
  const span = Math.max(1, hi - lo);
  for (let i = 0; i < gray.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(((gray[i] - lo) * 255) / span)));
  return out;
}

export function equalize(gray, hist) {
  const n = gray.length, cdf = new Float64Array(256);
  let acc = 0, cdfMin = -1;
  for (let i = 0; i < 256; i++) { acc += hist[i]; cdf[i] = acc; if (cdfMin < 0 && acc > 0) cdfMin = acc; }
  const lut = new Uint8Array(256);
  const denom = Math.max(1, n - cdfMin);
  for (let i = 0; i < 256; i++) lut[i] = Math.max(0, Math.min(255, Math.round(((cdf[i] - cdfMin) * 255) / denom)));
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = lut[gray[i]];
  return out;
}

/** Returns {gray, applied, stats}; `gray` is a new array when something was applied. */
export function normalizeLowLight(gray, opts = {}) {
  const s = stats(gray);
  const applied = decide(s, opts);
  if (applied === 'equalize') return { gray: equalize(gray, s.hist), applied, stats: s };
  if (applied === 'stretch') return { gray: stretch(gray, s.p2, s.p98), applied, stats: s };
  return { gray, applied, stats: s };
}
