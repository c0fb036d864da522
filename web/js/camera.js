// getUserMedia wrapper: start/stop, front/back switch, readable error messages.

export class CameraError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

export function explainCameraError(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return new CameraError('denied', 'Camera permission was denied. Allow camera access for this site in the browser settings and press Start again, or analyse a still photo.');
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') {
    return new CameraError('no-camera', 'No camera was found on this device. You can still analyse a still photo.');
  }
  if (name === 'NotReadableError' || name === 'TrackStartError') {
    return new CameraError('busy', 'The camera is in use by another app or could not be started. Close other camera apps and try again.');
  }
  return new CameraError('other', `The camera could not be started (${name || 'error'}: ${err && err.message}).`);
}

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.facing = 'user';
  }

  get running() { return !!this.stream; }
  get mirrored() { return this.facing === 'user'; }

  async start(facing = this.facing) {
    this.stop();
    this.facing = facing;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: facing }, width: { ideal: 640 }, height: { ideal: 480 } },
      });
    } catch (err) {
      throw explainCameraError(err);
    }
    this.stream = stream;
    this.video.srcObject = stream;
    this.video.muted = true;
    this.video.playsInline = true;
    await this.video.play().catch(() => {});
    if (!this.video.videoWidth) {
      await new Promise((resolve) => this.video.addEventListener('loadedmetadata', resolve, { once: true }));
    }
    return { width: this.video.videoWidth, height: this.video.videoHeight };
  }

  async switchFacing() {
    return this.start(this.facing === 'user' ? 'environment' : 'user');
  }

  stop() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null;
    this.video.srcObject = null;
  }
}
