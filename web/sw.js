// fer-hybrid service worker: makes the page work offline after one online visit.
//   pages, /static/js, /static/css: network-first (fresh when online), cache fallback
//   /static/vendor/*  (versioned folders): cache-first
//   /models/manifest.json: network-first; every member file it lists is cached with it
//   other /models/* files: network-first (a re-export keeps paths), cache fallback offline; this
//     includes a variant's files (models/<id>/, listed under the manifest's `variants`): never
//     fetched here ahead of time, only when the page loads that model, then cached like this
//   /api/* and non-GET requests: never touched (uploads always go to the network)
const VERSION = 'fer-hybrid-v1';
const SHELL = `${VERSION}-shell`;
const VENDOR = `${VERSION}-vendor`;
const MODELS = `${VERSION}-models`;

// Rendered by the server (backend/routers/pages.py) with lists derived from the files under web/
// (backend/precache.py): every module under web/js/, the vendored TF.js folder pinned in
// backend/assets.py and the detector weights. A Jinja template, so not valid JS until served.
const SHELL_URLS = {{ shell_urls | tojson }};
const VENDOR_URLS = {{ vendor_urls | tojson }};

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const shell = await caches.open(SHELL);
    await Promise.all(SHELL_URLS.map((u) => shell.add(u).catch(() => null)));
    const vendor = await caches.open(VENDOR);
    await Promise.all(VENDOR_URLS.map(async (u) => { if (!(await vendor.match(u))) await vendor.add(u).catch(() => null); }));
    await cacheModels().catch(() => null);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (!key.startsWith(VERSION)) await caches.delete(key);
    await self.clients.claim();
  })());
});

/** Fetch the manifest and cache it with every member's model.json and weight shards. */
async function cacheModels(manifestResponse) {
  const cache = await caches.open(MODELS);
  const res = manifestResponse || await fetch('/models/manifest.json', { cache: 'no-cache' });
  if (!res.ok) return;
  const manifest = await res.clone().json();
  await cache.put('/models/manifest.json', res);
  for (const m of manifest.members || []) {
    const modelUrl = new URL(m.path, new URL('/models/', self.location.origin)).href;
    const mres = await fetch(modelUrl, { cache: 'no-cache' });
    if (!mres.ok) continue;
    const model = await mres.clone().json();
    await cache.put(modelUrl, mres);
    const base = new URL('.', modelUrl);
    for (const group of model.weightsManifest || []) {
      for (const p of group.paths || []) {
        const wUrl = new URL(p, base).href;
        const wres = await fetch(wUrl, { cache: 'no-cache' });
        if (wres.ok) await cache.put(wUrl, wres);
      }
    }
  }
}

async function networkFirst(request, cacheName, opts = {}) {
  const cache = await caches.open(cacheName);
  try {
    const res = await fetch(request);
    if (res.ok) await cache.put(opts.key || request, res.clone());
    return res;
  } catch (err) {
    const hit = await cache.match(opts.key || request, { ignoreSearch: true });
    if (hit) return hit;
    throw err;
  }
}

async function cacheFirst(request, cacheName) {
  const cache = await caches.open(cacheName);
  const hit = await cache.match(request, { ignoreSearch: true });
  if (hit) return hit;
  const res = await fetch(request);
  if (res.ok) await cache.put(request, res.clone());
  return res;
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  const path = url.pathname;
  if (path.startsWith('/static/vendor/')) {
    event.respondWith(cacheFirst(req, VENDOR));
  } else if (path === '/models/manifest.json') {
    event.respondWith((async () => {
      try {
        const res = await fetch(req);
        if (res.ok) event.waitUntil(cacheModels(res.clone()).catch(() => null));
        return res;
      } catch (err) {
        const hit = await (await caches.open(MODELS)).match('/models/manifest.json');
        if (hit) return hit;
        throw err;
      }
    })());
  } else if (path.startsWith('/models/')) {
    event.respondWith(networkFirst(req, MODELS));
  } else if (req.mode === 'navigate' || path.startsWith('/static/') || path === '/upload' || path === '/') {
    event.respondWith(networkFirst(req, SHELL, { key: url.origin + path }));
  }
});
