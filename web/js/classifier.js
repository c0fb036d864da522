// Expression ensemble: models/manifest.json members as TF.js graph models, weighted soft voting,
// optional horizontal-flip TTA; all faces go through each member in ONE batched call.
// (Only functional tf.* ops: the UMD tf-core build has no chained tensor methods.)

export const MANIFEST_URL = '/models/manifest.json';

export class ModelLoadError extends Error {}

export class Ensemble {
  constructor(manifest, baseUrl, members) {
    this.manifest = manifest;
    this.baseUrl = baseUrl;
    this.members = members; // [{name, weight, model}]
    this.labels = manifest.labels;
    this.height = manifest.input?.height || 48;
    this.width = manifest.input?.width || 48;
    this.ttaFlip = !!manifest.ensemble?.tta_flip;
    this.placeholder = !!manifest.placeholder;
  }

  /** Fetch the manifest and load every member; throws ModelLoadError with a readable message. */
  static async load(url = MANIFEST_URL, onProgress = () => {}) {
    const tf = globalThis.tf;
    let manifest;
    try {
      const res = await fetch(url, { cache: 'no-cache' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      manifest = await res.json();
    } catch (err) {
      throw new ModelLoadError(`Could not load the expression models (${url}: ${err.message}). ` +
        'Export models with `fer-hybrid export` into models/ and reload.');
    }
    if (!Array.isArray(manifest.members) || manifest.members.length === 0 || !Array.isArray(manifest.labels)) {
      throw new ModelLoadError(`${url} lists no models; run \`fer-hybrid export\`.`);
    }
    if ((manifest.input?.channels ?? 1) !== 1) throw new ModelLoadError('Only grayscale (1-channel) models are supported.');
    const base = new URL('.', new URL(url, location.href));
    const members = [];
    for (const [i, m] of manifest.members.entries()) {
      onProgress(i, manifest.members.length, m.name);
      try {
        const model = await tf.loadGraphModel(new URL(m.path, base).href);
        members.push({ name: m.name, weight: Number(m.weight ?? 1), model });
      } catch (err) {
        throw new ModelLoadError(`Model "${m.name}" (${m.path}) failed to load: ${err.message}`);
      }
    }
    return new Ensemble(manifest, base.href, members);
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
