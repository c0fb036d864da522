// Environment checks and TF.js backend set-up (the only DOM it reads is the page's
// <meta name="fer-tfjs">; everything else comes from what callers pass in).

export const BACKENDS = ['wasm', 'webgl', 'cpu'];

/**
 * Decide whether the live camera can work here; returns null when it can, otherwise
 * {code, title, message}. Pure function of plain values so tests can call it directly.
 *   info = {isSecureContext, hostname, protocol, hasMediaDevices, port}
 */
export function cameraProblem(info) {
  const host = String(info.hostname || '').replace(/^\[|\]$/g, '');
  const local = host === 'localhost' || host === '127.0.0.1' || host === '::1' || host.endsWith('.localhost');
  if (!info.isSecureContext && !local) {
    return {
      code: 'insecure',
      title: 'The camera needs HTTPS',
      message:
        `This page was opened over plain ${info.protocol || 'http:'}//${host}, and browsers only allow ` +
        'the camera on secure pages. On the computer run `fer-hybrid serve --host 0.0.0.0 --https` and ' +
        'open the https:// address it prints (accept the self-signed certificate once). ' +
        'Opening http://localhost on the computer itself also works. You can still use a still photo below.',
    };
  }
  if (!info.hasMediaDevices) {
    return {
      code: 'no-media',
      title: 'No camera access in this browser',
      message: 'This browser does not offer camera access (navigator.mediaDevices is missing). ' +
        'Try a current Chrome, Firefox or Safari, or analyse a still photo below.',
    };
  }
  return null;
}

/** cameraProblem() for the current window. */
export function currentCameraProblem() {
  return cameraProblem({
    isSecureContext: window.isSecureContext,
    hostname: location.hostname,
    protocol: location.protocol,
    hasMediaDevices: !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia),
  });
}

/**
 * Backend requested in the URL (?backend=wasm|webgl|cpu|auto) or null. `auto`: the live page
 * measures again instead of using the backend it remembered for this browser (backendchoice.js).
 */
export function requestedBackend(search = location.search) {
  const b = new URLSearchParams(search).get('backend');
  return b && (BACKENDS.includes(b) || b === 'auto') ? b : null;
}

/**
 * URL of the vendored TF.js folder (its wasm binaries live there), or null. The server writes
 * it into each page from backend/assets.py, so the TF.js version is spelled in one place.
 */
export function tfjsFolder(doc = document) {
  const meta = doc.querySelector('meta[name="fer-tfjs"]');
  return meta ? meta.content : null;
}

/** Script (in the TF.js folder) of each backend the pages load only when it is asked for. */
export const LAZY_BACKENDS = { webgl: 'tf-backend-webgl.es2017.min.js' };

/**
 * Load a lazily loaded backend's script once (a same-origin <script>, which the CSP allows);
 * resolves when it has registered itself with tf. The live page loads WebGL only when it tries
 * it: on the wasm path that is 370 KB the page never downloads.
 */
export function loadBackendScript(name, doc = document) {
  const tf = globalThis.tf;
  if (!LAZY_BACKENDS[name] || tf.findBackendFactory(name)) return Promise.resolve();
  loadBackendScript.pending = loadBackendScript.pending || {};
  loadBackendScript.pending[name] = loadBackendScript.pending[name] || new Promise((resolve, reject) => {
    const el = doc.createElement('script');
    el.src = tfjsFolder(doc) + LAZY_BACKENDS[name];
    el.onload = () => resolve();
    el.onerror = () => { delete loadBackendScript.pending[name]; reject(new Error(`Could not load ${el.src}`)); };
    doc.head.appendChild(el);
  });
  return loadBackendScript.pending[name];
}

/**
 * Make sure the vendored tf global exists and switch to `name`; returns the active backend.
 * `lazy`: load a backend of LAZY_BACKENDS first if it is not there (the live page; the upload
 * page never loads WebGL, so asking it for WebGL fails as before).
 */
export async function useBackend(name, { lazy = false } = {}) {
  const tf = globalThis.tf;
  if (!tf) throw new Error(`TensorFlow.js did not load (${tfjsFolder()}).`);
  if (lazy) await loadBackendScript(name);
  if (tf.wasm && tf.wasm.setWasmPaths && !useBackend._pathsSet) {
    // tfjs-wasm's threaded build starts its workers with importScripts(blob:...), which the page's
    // CSP (script-src 'self') forbids; use the single-threaded SIMD build unless ?threads=N
    // (N >= 2 threads; needs blob: in script-src and cross-origin isolation).
    const threads = Number(new URLSearchParams(location.search).get('threads'));
    if (threads >= 2 && tf.wasm.setThreadsCount) tf.wasm.setThreadsCount(threads);
    else tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    tf.wasm.setWasmPaths(tfjsFolder());
    useBackend._pathsSet = true;
  }
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`TF.js backend "${name}" is not available in this browser.`);
  await tf.ready();
  return tf.getBackend();
}

/**
 * Start TF.js on the backend asked for in the URL (?backend=), else on wasm with cpu as the
 * fallback; returns the active backend. A requested backend that fails is reported (the live
 * page tells the user to try another) unless `fallbackOnRequest`, which falls back to cpu as
 * well (the upload page only detects faces and loads no WebGL backend, so any backend will do).
 */
export async function chooseBackend({ fallbackOnRequest = false, lazy = false } = {}) {
  const req = requestedBackend();
  if (req && req !== 'auto') {
    return fallbackOnRequest ? useBackend(req, { lazy }).catch(() => useBackend('cpu')) : useBackend(req, { lazy });
  }
  return defaultBackend();
}

/** wasm, else cpu (a browser without WebAssembly, or a wasm binary that did not load). */
export async function defaultBackend() {
  try {
    return await useBackend('wasm');
  } catch (err) {
    console.warn(err);
    return useBackend('cpu');
  }
}

/** Register the service worker (best effort). Returns the registration or null. */
export async function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return null;
  try {
    return await navigator.serviceWorker.register('/sw.js', { scope: '/' });
  } catch (err) {
    console.warn('service worker registration failed', err);
    return null;
  }
}
