// Shared per-image pipeline: detect -> align -> low-light normalise -> classify (batched).
import { alignFace } from './align.js';
import { normalizeLowLight } from './lowlight.js';

/**
 * Returns {faces: [{box, score, keypoints, gray, lowlight, probs}], detectMs, classifyMs}.
 * classifier may be null (detection only).
 */
export async function analyse(source, width, height, detector, classifier, scratch = null) {
  const t0 = performance.now();
  const dets = await detector.detect(source, width, height);
  const t1 = performance.now();
  const size = classifier ? classifier.height : 48;
  const faces = dets.map((d) => {
    const crop = alignFace(source, d, size, scratch);
    const ll = normalizeLowLight(crop.gray);
    return { ...d, gray: ll.gray, lowlight: ll.applied };
  });
  let probs = [];
  if (classifier && faces.length) probs = await classifier.classify(faces.map((f) => f.gray));
  faces.forEach((f, i) => { f.probs = probs[i] || null; });
  const t2 = performance.now();
  return { faces, detectMs: t1 - t0, classifyMs: t2 - t1 };
}
