// The live page's TF.js backend for this browser. Measuring WebGL against wasm costs seconds (on
// headless Chromium's software WebGL the detector took 0.35-1.2 s a pass against 50-70 ms on
// wasm, after seconds of shader compilation), so the page measures once and remembers the
// outcome in localStorage: a later visit starts straight on it. The remembered choice is keyed by the TF.js version, the probe's rule and the
// browser's user agent, so a new TF.js, a changed rule or a browser update measures again.
// ?backend=wasm|webgl|cpu still wins (nothing read or written); ?backend=auto measures again.

import { BACKENDS, requestedBackend, useBackend, defaultBackend } from './env.js';

export const BACKEND_KEY = 'fer-hybrid.backend';

// Raise whenever probe() would decide differently: every browser then measures again.
// 1: detector + ensemble timed on wasm and WebGL on every visit (nothing remembered).
// 2: software WebGL ruled out by its renderer's name; else the detector alone timed.
export const PROBE_RULE = 2;

// WebGL only when it is clearly faster: wasm is the tested default, and WebGL's first frames
// (shader compilation) and its memory cost more than wasm's.
export const WEBGL_MARGIN = 0.8;

// Renderers that rasterise WebGL on the CPU (Chromium's SwiftShader, Mesa's llvmpipe, softpipe
// and lavapipe, Windows' Basic Render Driver): there the detector ran 5-25x slower than on wasm.
export const SOFTWARE_RENDERER = /swiftshader|llvmpipe|softpipe|lavapipe|software|basic render/i;

/** localStorage, or null where the browser refuses it (then every visit measures). */
export function storage() {
  try { return window.localStorage; } catch { return null; }
}

/** What a remembered choice must match to be used: {tfjs, rule, browser}. */
export function choiceKey(tf = globalThis.tf, nav = navigator) {
  return { tfjs: String(tf && tf.version_core), rule: PROBE_RULE, browser: nav.userAgent };
}

/** The remembered choice {backend, why, timings, ...} when it matches `key`, else null. */
export function readChoice(store, key) {
  if (!store) return null;
  try {
    const v = JSON.parse(store.getItem(BACKEND_KEY));
    const same = v && v.tfjs === key.tfjs && v.rule === key.rule && v.browser === key.browser;
    return same && BACKENDS.includes(v.backend) ? v : null;
  } catch {
    return null; // not JSON: an older or damaged entry, measured again
  }
}

export function rememberChoice(store, key, choice) {
  try {
    if (store) store.setItem(BACKEND_KEY, JSON.stringify({ ...key, ...choice, at: new Date().toISOString() }));
  } catch { /* storage full or refused: measured again next visit */ }
}

export function forgetChoice(store) {
  try { if (store) store.removeItem(BACKEND_KEY); } catch { /* nothing to forget */ }
}

/**
 * Start TF.js for the live page. Returns {backend, source, probe, why}:
 *  source 'url'        ?backend=wasm|webgl|cpu, used as asked (its failure is the caller's error);
 *         'remembered' the choice an earlier visit measured;
 *         'fallback'   the remembered backend failed to start: forgotten, wasm (else cpu) instead;
 *         'default'    nothing remembered (or ?backend=auto): wasm, else cpu.
 *  probe: the caller should run probe() once the detector is loaded (wasm started, nothing known);
 *  why: the remembered probe's reason.
 */
export async function startBackend({ store = storage(), search = location.search } = {}) {
  const req = requestedBackend(search);
  if (req && req !== 'auto') return { backend: await useBackend(req, { lazy: true }), source: 'url', probe: false };
  const known = req === 'auto' ? null : readChoice(store, choiceKey());
  if (known) {
    try {
      const backend = await useBackend(known.backend, { lazy: true });
      return { backend, source: 'remembered', probe: false, why: known.why };
    } catch (err) {
      console.warn(`the remembered backend ${known.backend} did not start; forgotten`, err);
      forgetChoice(store);
      return { backend: await defaultBackend(), source: 'fallback', probe: false };
    }
  }
  const backend = await defaultBackend();
  return { backend, source: 'default', probe: backend === 'wasm' };
}

/** The WebGL renderer's name, or null without WebGL. The context is released at once. */
export function webglRenderer(doc = document) {
  const canvas = doc.createElement('canvas');
  const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
  if (!gl) return null;
  let name = gl.getParameter(gl.RENDERER);
  // Chromium and Safari say "WebKit WebGL" there and name the GPU only through this extension;
  // Firefox names it directly (and warns that the extension is deprecated), so it is asked last.
  if (/^webkit webgl$/i.test(String(name))) {
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    if (info) name = gl.getParameter(info.UNMASKED_RENDERER_WEBGL);
  }
  const lose = gl.getExtension('WEBGL_lose_context');
  if (lose) lose.loseContext(); // browsers cap live contexts; TF.js makes its own
  return String(name || '');
}

/** Milliseconds per detector pass on the current backend, after one untimed pass. */
export async function timeDetector(detector, runs = 3) {
  const c = document.createElement('canvas');
  c.width = 320; c.height = 240;
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#777'; ctx.fillRect(0, 0, 320, 240);
  await detector.detect(c, 320, 240); // compiles the kernels (WebGL: its shaders)
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await detector.detect(c, 320, 240);
  return (performance.now() - t0) / runs;
}

/**
 * Rule PROBE_RULE, run on wasm with the detector loaded: wasm without WebGL or with a software
 * WebGL; else WebGL when the detector runs in < WEBGL_MARGIN of wasm's time on it. The detector
 * alone is timed, so the expression models keep downloading meanwhile; it is most of a frame's
 * work. Leaves TF.js on the chosen backend; returns {backend, why, timings?}.
 */
export async function probe(detector, { renderer = webglRenderer() } = {}) {
  if (renderer === null) return { backend: 'wasm', why: 'no WebGL' };
  if (SOFTWARE_RENDERER.test(renderer)) return { backend: 'wasm', why: `WebGL renders in software (${renderer})` };
  const timings = { wasm: await timeDetector(detector) };
  try {
    await useBackend('webgl', { lazy: true });
    timings.webgl = await timeDetector(detector);
  } catch (err) {
    console.warn('WebGL probe failed; staying on wasm', err);
    await useBackend('wasm');
    return { backend: 'wasm', why: `WebGL failed (${err && err.message || err})`, timings };
  }
  if (timings.webgl < WEBGL_MARGIN * timings.wasm) return { backend: 'webgl', why: `faster on ${renderer}`, timings };
  await useBackend('wasm');
  return { backend: 'wasm', why: `WebGL not faster on ${renderer}`, timings };
}
