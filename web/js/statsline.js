// The performance line in the top bar. Each number says what it counts and in which unit: the
// camera frames per second the page processed out of those the camera delivered (both measured
// by frameloop.js), the median time of a processed frame, the last detector pass and the
// classifier's time per face. A photo shows its own detector and classifier times. The parts
// are shown joined by " · ", each kept on one line.

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
const ms = (v) => `${Math.round(v)} ms`;

/** The parts of the line for `s` (window.ferState): its backend, then the live or the photo figures. */
export function statsParts(s) {
  const parts = s.backend ? [s.backend] : [];
  if (s.status === 'running') {
    if (s.fps) {
      parts.push(s.cameraFps ? `processed ${s.fps.toFixed(1)} of ${Math.round(s.cameraFps)} camera fps`
        : `processed ${s.fps.toFixed(1)} fps`);
    }
    if (s.frameTimes && s.frameTimes.length) parts.push(`${ms(median(s.frameTimes.slice(-30)))}/frame`);
  } else if (s.status === 'photo') {
    parts.push('photo');
  } else {
    return parts; // nothing measured is current: the camera is off, no photo shown
  }
  if (s.detectMs != null) parts.push(`detect ${ms(s.detectMs)}`);
  if (s.classifyPerFaceMs != null) parts.push(`classify ${ms(s.classifyPerFaceMs)}/face`);
  return parts;
}
