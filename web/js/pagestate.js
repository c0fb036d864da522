// The live page's states, and what each control can do in each. main.js moves the page from
// state to state; whether a button works, the Start/Stop label and the words that say why a
// control is off all follow from the state, so no order of taps can reach a control that
// cannot work (Flip while the models load, Photo without a detector).
//
//   loading   -> ready | failed (no detector or no backend: only a reload helps)
//   ready     -> starting (Start, Flip) | analysing (Photo)
//   starting  -> running | ready (the camera could not start)
//   running   -> ready (Stop) | starting (Flip) | analysing (Photo)
//   analysing -> photo | ready or starting (the photo could not be analysed)
//   photo     -> starting (Start, Flip; Back to camera when the camera ran before the photo)
//                | ready (Back to camera) | analysing (Photo)

export const PHASES = ['loading', 'ready', 'starting', 'running', 'analysing', 'photo', 'failed'];

const REASONS = {
  loading: 'Start, Flip camera and Photo come on once the face detector and the models have loaded.',
  failed: 'Recognition could not start here, so Start, Flip camera and Photo are off. Reload the page to try again.',
  noCamera: 'The live camera cannot run here; Photo still works.',
  modelBusy: 'Photo waits until the new model has loaded.',
};

/**
 * What the controls can do in `phase`. ctx.cameraProblem: the live camera cannot run on this
 * page (insecure origin, no mediaDevices); ctx.modelBusy: a model switch is loading.
 * Returns {toggle, toggleLabel ('Start' | 'Stop'), flip, photo, close, closeShown, model,
 * reason}: each control's enabled state ("close" is Back to camera, shown with a photo), and
 * the sentence that says why controls are off ('' when none is off for long).
 */
export function controlsFor(phase, { cameraProblem = false, modelBusy = false } = {}) {
  if (!PHASES.includes(phase)) throw new Error(`unknown page state ${phase}`);
  const idle = phase === 'ready' || phase === 'photo'; // nothing running: any action may start
  const running = phase === 'running';
  const camera = !cameraProblem;
  const c = {
    toggle: running || (idle && camera),
    toggleLabel: running ? 'Stop' : 'Start',
    flip: (idle || running) && camera,
    photo: (idle || running) && !modelBusy,
    close: phase === 'photo',
    closeShown: phase === 'photo' || phase === 'analysing',
    // A photo is classified by the model it started with; a switch cannot start twice.
    model: (idle || running || phase === 'starting') && !modelBusy,
    reason: '',
  };
  if (phase === 'loading' || phase === 'failed') c.reason = REASONS[phase];
  else if (idle && cameraProblem) c.reason = REASONS.noCamera;
  else if ((idle || running) && modelBusy) c.reason = REASONS.modelBusy;
  return c;
}
