// face-api.js weights via @vladmandic/face-api 1.7.15 (the maintained fork; the original
// face-api.js 0.22.2 on npm ships no weights): TinyFaceDetector at inputSize 320 + the face
// expression net; no landmarks (withFaceExpressions works on the detections directly).
import * as faceapi from '/peer/faceapi/dist/face-api.esm.js';

const MODEL = '/peer/faceapi/model/';

export async function load() {
  const tf = faceapi.tf;
  tf.setWasmPaths('/tfjs/');
  await tf.setBackend('wasm');
  await tf.ready();
  await faceapi.nets.tinyFaceDetector.loadFromUri(MODEL);
  await faceapi.nets.faceExpressionNet.loadFromUri(MODEL);
  const options = new faceapi.TinyFaceDetectorOptions({ inputSize: 320, scoreThreshold: 0.5 });
  const canvas = (bytes, i) => {
    const c = document.createElement('canvas');
    c.width = 48; c.height = 48;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    const img = ctx.createImageData(48, 48);
    for (let p = 0; p < 48 * 48; p++) {
      const v = bytes[i * 48 * 48 + p];
      img.data.set([v, v, v, 255], p * 4);
    }
    ctx.putImageData(img, 0, 0);
    return c;
  };
  return {
    info: { tool: 'faceapi', version: faceapi.version, backend: tf.getBackend(),
            wasm: { simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
                    multithread: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT') },
            detector: 'TinyFaceDetector inputSize 320, scoreThreshold 0.5' },
    async detect(video) {
      const r = await faceapi.detectAllFaces(video, options).withFaceExpressions();
      return r.length;
    },
    // Each crop as a canvas (grey in R=G=B), as extractFaces hands faces to the net; the
    // expression net does its own resize to 112x112 and normalisation.
    async classify(bytes, n) {
      const inputs = Array.from({ length: n }, (_, i) => canvas(bytes, i));
      let res = await faceapi.nets.faceExpressionNet.predictExpressions(inputs);
      if (!Array.isArray(res)) res = [res];
      const labels = Object.keys(res[0]);
      const probs = [];
      for (const e of res) for (const k of labels) probs.push(e[k]);
      return { labels, probs };
    },
  };
}
