// Expression ensemble: models/manifest.json members as TF.js graph models, weighted soft voting,
// optional horizontal-flip TTA; all faces go through each member in ONE batched call; then the
// manifest's temperature (softmax(log(p) / T), fitted by `fer-hybrid calibrate`) so that the
// percentages the page shows mean what they say.
// (Only functional tf.* ops: the UMD tf-core build has no chained tensor methods.)

import { DARK_MEAN } from './lowlight.js';

export const MANIFEST_URL = '/models/manifest.json';
// The model the user picked when models/manifest.json offers variants (its `variants` list).
export const VARIANT_KEY = 'fer-hybrid.model';

export class ModelLoadError extends Error {}

/** Fetch and parse a manifest; throws ModelLoadError with a readable message. */
export async function fetchManifest(url = MANIFEST_URL) {
  try {
    const res = await fetch(url, { cache: 'no-cache' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return await res.json();
  } catch (err) {
    throw new ModelLoadError(`Could not load the expression models (${url}: ${err.message}). ` +
      'Export models with `fer-hybrid export` into models/ and reload.');
  }
}

/**
 * The selectable models a top manifest offers: [{id, title, description, url, default}], the
 * default first, URLs resolved against the manifest's own URL. [] when it lists none (one
 * model); entries without an id or manifest are skipped.
 */
export function listVariants(manifest, url = MANIFEST_URL) {
  const base = new URL(url, location.href);
  const list = Array.isArray(manifest && manifest.variants) ? manifest.variants : [];
  const out = list.filter((v) => v && typeof v.id === 'string' && typeof v.manifest === 'string')
    .map((v) => ({
      id: v.id, title: String(v.title || v.id), description: String(v.description || ''),
      url: v.default ? base.href : new URL(v.manifest, base).href, default: v.default === true,
    }));
  return out.sort((a, b) => b.default - a.default);
}

/** The variant to load: the remembered id when it is still offered, else the default. */
export function pickVariant(variants, rememberedId) {
  return variants.find((v) => v.id === rememberedId) || variants.find((v) => v.default) || variants[0] || null;
}

export class Ensemble {
  constructor(manifest, baseUrl, members) {
    this.manifest = manifest;
    this.baseUrl = baseUrl;
    this.members = members; // [{name, weight, model}]
    this.labels = manifest.labels;
    this.height = manifest.input?.height || 48;
    this.width = manifest.input?.width || 48;
    this.ttaFlip = !!manifest.ensemble?.tta_flip;
    this.temperature = Number(manifest.ensemble?.temperature ?? 1) || 1;
    // The page equalises face crops darker than this (lowlight.js; 0: never), chosen per models
    // folder by `fer-hybrid calibrate --lowlight choose`; the former rule for manifests from before.
    this.equalizeBelow = Number(manifest.ensemble?.equalize_below ?? DARK_MEAN);
    this.placeholder = !!manifest.placeholder;
  }

  /**
   * Fetch the manifest (unless `manifest`, already fetched from `url`, is given) and load every
   * member; throws ModelLoadError with a readable message. A failure disposes what was loaded.
   */
  static async load(url = MANIFEST_URL, onProgress = () => {}, manifest = null) {
    return Ensemble.build(await Ensemble.download(url, onProgress, manifest));
  }

  /**
   * The download half of load(): the manifest and each member's model.json and weights, as
   * bytes. Makes no tensor, so it needs no TF.js backend: the live page downloads the models
   * while it starts and chooses its backend, and builds them on the chosen one (build()).
   * onProgress(i, n, name) before member i of n. Throws ModelLoadError with a readable message.
   */
  static async download(url = MANIFEST_URL, onProgress = () => {}, manifest = null) {
    const tf = globalThis.tf;
    if (!manifest) manifest = await fetchManifest(url);
    if (!Array.isArray(manifest.members) || manifest.members.length === 0 || !Array.isArray(manifest.labels)) {
      throw new ModelLoadError(`${url} lists no models; run \`fer-hybrid export\`.`);
    }
    if ((manifest.input?.channels ?? 1) !== 1) throw new ModelLoadError('Only grayscale (1-channel) models are supported.');
    const base = new URL('.', new URL(url, location.href));
    const members = [];
    for (const [i, m] of manifest.members.entries()) {
      onProgress(i, manifest.members.length, m.name);
      try {
        const artifacts = await tf.io.http(new URL(m.path, base).href).load();
        members.push({ name: m.name, path: m.path, weight: Number(m.weight ?? 1), artifacts });
      } catch (err) {
        throw new ModelLoadError(`Model "${m.name}" (${m.path}) failed to load: ${err.message}`);
      }
    }
    return { manifest, base: base.href, members };
  }

  /** The ensemble of a download() on the current backend. A failure disposes what was built. */
  static build({ manifest, base, members }) {
    const tf = globalThis.tf;
    const built = [];
    for (const m of members) {
      try {
        built.push({ name: m.name, weight: m.weight, model: tf.loadGraphModelSync(m.artifacts) });
      } catch (err) {
        built.forEach((x) => x.model.dispose());
        throw new ModelLoadError(`Model "${m.name}" (${m.path}) failed to load: ${err.message}`);
      }
    }
    return new Ensemble(manifest, base, built);
  }

  /** Free every member's weights (switching models: never two in memory). */
  dispose() {
    for (const m of this.members) m.model.dispose();
    this.members = [];
  }

  /** One dummy batch through every member so the first real frame is not slow. */
  async warmup() {
    await this.classify([new Uint8Array(this.height * this.width).fill(128)]);
  }

  /**
   * crops: array of Uint8Array (height*width grey 0..255). Returns Float32Array(7) probabilities per crop.
   * Also sets this.lastMs (whole call) for the latency readout.
   */
  async classify(crops) {
    if (!crops.length) return [];
    const tf = globalThis.tf;
    const t0 = performance.now();
    const n = crops.length, H = this.height, W = this.width, K = this.labels.length;
    const buf = new Float32Array(n * H * W);
    crops.forEach((c, i) => buf.set(c, i * H * W));
    const total = this.members.reduce((a, m) => a + m.weight, 0) || 1;
    const out = tf.tidy(() => {
      let x = tf.tensor4d(buf, [n, H, W, 1]);
      if (this.ttaFlip) x = tf.concat([x, tf.reverse(x, 2)], 0); // one batch: faces + mirrored faces
      let acc = null;
      for (const m of this.members) {
        let p = m.model.execute(x);
        if (Array.isArray(p)) p = p[0];
        p = tf.mul(p, m.weight / total);
        acc = acc ? tf.add(acc, p) : p;
      }
      if (this.ttaFlip) acc = tf.div(tf.add(tf.slice(acc, [0, 0], [n, K]), tf.slice(acc, [n, 0], [n, K])), 2);
      // Never changes the top class: log and softmax are monotone, T > 0 (training/evaluate/calibration.py).
      if (this.temperature !== 1) acc = tf.softmax(tf.div(tf.log(tf.maximum(acc, 1e-12)), this.temperature));
      return acc;
    });
    const data = await out.data();
    out.dispose();
    this.lastMs = performance.now() - t0;
    const res = [];
    for (let i = 0; i < n; i++) res.push(data.slice(i * K, (i + 1) * K));
    return res;
  }
}

export function argmax(p) {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
  return best;
}
