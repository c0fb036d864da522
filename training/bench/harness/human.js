// Human 3.3.6 (@vladmandic/human): BlazeFace + the emotion model, every other module off.
// ?cache=1: Human's default video behaviour (frame-difference cache: cacheSensitivity 0.7, and
// the detector/emotion skipFrames/skipTime reuse of earlier results); ?cache=0: all of it off,
// so every frame runs detection and emotion.
import { Human } from '/peer/human/dist/human.esm.js';

const OFF = { enabled: false };

export async function load(params) {
  const cache = params.get('cache') !== '0';
  const config = {
    backend: 'wasm', wasmPath: '/tfjs/', modelBasePath: '/peer/human/models/', cacheModels: false,
    warmup: 'none', debug: false,
    face: {
      enabled: true,
      detector: { enabled: true, maxDetected: 20, rotation: false }, // our page: up to 20 faces
      mesh: OFF, iris: OFF, attention: OFF, description: OFF, antispoof: OFF, liveness: OFF,
      emotion: { enabled: true },
    },
    // no whole-frame image filters (Human runs them through WebGL, which headless Chromium
    // renders in software): the frame goes to the detector as the camera gives it, as on our page
    filter: OFF,
    body: OFF, hand: OFF, object: OFF, segmentation: OFF, gesture: OFF,
  };
  if (!cache) {
    config.cacheSensitivity = 0;
    config.face.detector = { ...config.face.detector, skipFrames: 0, skipTime: 0 };
    config.face.emotion = { ...config.face.emotion, skipFrames: 0, skipTime: 0 };
  }
  const human = new Human(config);
  await human.init();
  await human.load();
  const tf = human.tf;
  const model = human.models.models.emotion;
  if (!model) throw new Error('Human did not load its emotion model');
  const size = model.inputs[0].shape[2];
  const detector = human.models.models.blazeface;
  if (!detector) throw new Error('Human did not load BlazeFace');
  const faceSize = detector.inputs[0].shape[2]; // blazeface.size(): the face crop's side
  const rgbWeights = tf.tensor1d([0.2989, 0.5870, 0.1140], 'float32');

  return {
    info: { tool: 'human', version: human.version, backend: tf.getBackend(), cache,
            wasm: { simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
                    multithread: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT') },
            emotionLabels: ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'],
            faceCrop: faceSize, emotionInput: size },
    async detect(video) {
      const r = await human.detect(video);
      return r.face.filter((f) => f.emotion && f.emotion.length).length;
    },
    // Human's own path from a face box to the emotion model, replayed on a 48x48 crop (the box
    // is the whole crop): src/face/facemeshutil.ts cutAndResize (tf.image.cropAndResize of the
    // box to blazeface.size() x blazeface.size(), then / 255; what facemesh.ts gives every face
    // when the mesh is off), then src/gear/emotion.ts predict(): resizeBilinear to the model's
    // 64x64 (alignCorners false), grey = sum(rgb * [0.2989, 0.5870, 0.1140]), (grey - 0.5) * 2,
    // model.execute; the output is already a probability vector in the order of emotion.ts
    // `annotations` (oarriaga's, FER2013's).
    async classify(bytes, n) {
      const out = tf.tidy(() => {
        const rgb = tf.tile(tf.tensor4d(Float32Array.from(bytes), [n, 48, 48, 1]), [1, 1, 1, 3]);
        const boxes = tf.tensor2d(Array.from({ length: n }, () => [0, 0, 1, 1]));
        const index = tf.tensor1d(Array.from({ length: n }, (_, i) => i), 'int32');
        const face = tf.div(tf.image.cropAndResize(rgb, boxes, index, [faceSize, faceSize]), 255);
        const resized = tf.image.resizeBilinear(face, [size, size], false);
        const g = tf.sum(tf.mul(resized, rgbWeights), 3, true);
        return model.execute(tf.mul(tf.sub(g, 0.5), 2));
      });
      const probs = Array.from(await out.data());
      out.dispose();
      return { labels: this.info.emotionLabels, probs };
    },
  };
}
