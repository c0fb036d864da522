// Test harness for the cross-engine tests (tests/test_e2e_engines.py), never shipped in the page:
// the tests' server (tests/engine_pages.py) puts it first in the <head> of the pages it serves, so
// it runs before any of the page's scripts, in every engine alike (WebKit's driver has no
// "run this before the page" command of its own).
//
// * Collects uncaught errors and unhandled rejections in `window.__e2e.errors` (WebKit gives the
//   driver no console, so this is the one way to see them in all three engines).
// * Replaces getUserMedia with a canvas stream of a face photo (/__e2e__/camera.png): the
//   engines' own fake cameras show test patterns, in which no face is found.
(() => {
  'use strict';
  // The page's first scripts (TF.js, deferred) define `tf`: not yet run when this runs first.
  const beforePageScripts = typeof window.tf === 'undefined';
  const harness = { errors: [], cameraCalls: 0, beforePageScripts };
  window.__e2e = harness;

  const describe = (x) => (x instanceof Error ? `${x.name}: ${x.message}` : String(x));
  window.addEventListener('error', (e) => {
    const what = e.error ? describe(e.error) : e.message;
    harness.errors.push(`uncaught ${what} (${e.filename}:${e.lineno})`);
  });
  window.addEventListener('unhandledrejection', (e) => {
    harness.errors.push(`unhandled rejection: ${describe(e.reason)}`);
  });

  const FPS = 15;
  async function faceStream() {
    const img = new Image();
    img.src = '/__e2e__/camera.png';
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    let tick = 0;
    // Redrawn with a 1 px jitter: an unchanged canvas gives a captured stream no new frames,
    // and the page's loop waits for new camera frames.
    const draw = () => {
      tick += 1;
      ctx.fillStyle = '#282828';
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, tick % 2, 0);
    };
    draw();
    const stream = canvas.captureStream(FPS);
    const timer = setInterval(draw, 1000 / FPS);
    for (const track of stream.getVideoTracks()) {
      const stop = track.stop.bind(track);
      track.stop = () => { clearInterval(timer); stop(); };
    }
    return stream;
  }

  if (navigator.mediaDevices) {
    navigator.mediaDevices.getUserMedia = async () => {
      harness.cameraCalls += 1;
      return faceStream();
    };
  }
})();
