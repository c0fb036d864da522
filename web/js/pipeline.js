// Shared per-image pipeline: detect -> align -> low-light normalise -> classify (batched).
import { alignFace, alignFaceLuma } from './align.js';
import { normalizeLowLight } from './lowlight.js';

/**
 * What the classifier sees of one detection: the aligned size x size grey crop after the
 * low-light step. {gray, lowlight} (lowlight: the branch applied). Live frames and photos both.
 * `classifier`: its manifest's low-light threshold applies (each models folder has its own:
 * models trained on dark images do better without the step); none: lowlight.js's default.
 * `planes`: the camera frame's copied planes (motion.js grabGrayFast), read instead of drawing
 * `source` (align.js alignFaceLuma; the live view's frames).
 */
export function faceCrop(source, det, size, scratch = null, classifier = null, planes = null) {
  const rule = classifier && classifier.equalizeBelow != null ? { darkMean: classifier.equalizeBelow } : {};
  const aligned = planes ? alignFaceLuma(planes, det, size) : alignFace(source, det, size, scratch);
  const ll = normalizeLowLight(aligned.gray, rule);
  return { gray: ll.gray, lowlight: ll.applied };
}

/**
 * Returns {faces: [{box, score, keypoints, gray, lowlight, probs}], detectMs, classifyMs}.
 * classifier may be null (detection only).
 */
export async function analyse(source, width, height, detector, classifier, scratch = null) {
  const t0 = performance.now();
  const dets = await detector.detect(source, width, height);
  const t1 = performance.now();
  const size = classifier ? classifier.height : 48;
  const faces = dets.map((d) => ({ ...d, ...faceCrop(source, d, size, scratch, classifier) }));
  let probs = [];
  if (classifier && faces.length) probs = await classifier.classify(faces.map((f) => f.gray));
  faces.forEach((f, i) => { f.probs = probs[i] || null; });
  const t2 = performance.now();
  return { faces, detectMs: t1 - t0, classifyMs: t2 - t1 };
}
