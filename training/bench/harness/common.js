// What every peer harness shares: load the tool named by ?tool=, expose window.bench to Python.
//   bench.ready / bench.error / bench.info   set once the tool is loaded on the wasm backend
//   bench.latency(seconds, warmupSeconds)   camera on, detect+classify once per distinct camera
//                                           frame (requestVideoFrameCallback), per-frame ms
//   bench.classify(b64, n)                  n 48x48 grey crops (base64 bytes) -> {labels, probs}
const params = new URLSearchParams(location.search);
const bench = { ready: false, error: null, info: null };
window.bench = bench;

function decode(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

async function openCamera(video) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: false, video: { width: { ideal: 640 }, height: { ideal: 480 } },
  });
  video.srcObject = stream;
  await video.play();
  while (!video.videoWidth) await new Promise((r) => setTimeout(r, 20));
  return stream;
}

/** Run `step(video) -> faces` once per distinct camera frame for warmup + seconds. Returns the
 *  per-frame times (ms, after the warm-up) and faces found per timed frame. */
function loopFrames(video, step, seconds, warmup) {
  return new Promise((resolve, reject) => {
    const times = [], faces = [];
    let lastFrame = -1, skippedRepeats = 0;
    const t0 = performance.now();
    const onFrame = async (now, meta) => {
      try {
        const elapsed = (performance.now() - t0) / 1000;
        if (elapsed > warmup + seconds) { resolve({ times, faces, skippedRepeats }); return; }
        if (meta.presentedFrames === lastFrame) { skippedRepeats++; video.requestVideoFrameCallback(onFrame); return; }
        lastFrame = meta.presentedFrames;
        const s = performance.now();
        const n = await step(video);
        const ms = performance.now() - s;
        if (elapsed >= warmup) { times.push(ms); faces.push(n); }
        video.requestVideoFrameCallback(onFrame);
      } catch (err) { reject(err); }
    };
    video.requestVideoFrameCallback(onFrame);
  });
}

async function main() {
  const tool = params.get('tool');
  const mod = await import(`./${tool}.js`);
  const impl = await mod.load(params);
  const video = document.getElementById('video');
  bench.latency = async (seconds, warmup) => {
    const stream = video.srcObject || await openCamera(video);
    const r = await loopFrames(video, impl.detect, seconds, warmup);
    return { ...r, width: video.videoWidth, height: video.videoHeight, streamActive: stream.active };
  };
  bench.classify = async (b64, n) => impl.classify(decode(b64), n);
  bench.info = { ...impl.info, crossOriginIsolated: self.crossOriginIsolated,
                 sharedArrayBuffer: typeof SharedArrayBuffer !== 'undefined',
                 hardwareConcurrency: navigator.hardwareConcurrency, userAgent: navigator.userAgent };
  bench.ready = true;
}

main().catch((err) => { bench.error = String(err && err.stack || err); console.error(err); });
