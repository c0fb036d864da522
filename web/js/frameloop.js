// One callback per distinct camera frame, never two at once, dropping frames while busy.
// requestVideoFrameCallback where the browser has it (Chrome, Safari, Firefox 132+); elsewhere
// requestAnimationFrame plus a check that the video shows a frame we have not processed yet.

/** Events per second over a sliding window of timestamps (ms). */
export class RateMeter {
  constructor(windowMs = 2000) { this.windowMs = windowMs; this.times = []; }
  tick(now) {
    this.times.push(now);
    while (this.times.length > 2 && now - this.times[0] > this.windowMs) this.times.shift();
  }
  get rate() {
    const t = this.times;
    if (t.length < 2) return 0;
    return (1000 * (t.length - 1)) / Math.max(1, t[t.length - 1] - t[0]);
  }
}

export const FRAMES_KEPT = 240;

/** Append to a bounded list (the last FRAMES_KEPT values). */
function keep(list, value) {
  list.push(value);
  if (list.length > FRAMES_KEPT) list.splice(0, list.length - FRAMES_KEPT);
}

/**
 * new FrameLoop(video, onFrame, stats, onError).start(); onFrame(frameId) is awaited: frames that arrive
 * meanwhile are counted in stats.framesSeen but only the newest is processed afterwards (stale
 * frames are dropped, a frame is never processed twice). `stats` receives framesSeen,
 * framesProcessed, cameraFps, fps (processed frames per second) and, for the last <= 240
 * processed frames, frameTimes (ms each onFrame took) and frameIds (which camera frame it was).
 */
export class FrameLoop {
  constructor(video, onFrame, stats, onError = (err) => console.error(err)) {
    Object.assign(this, { video, onFrame, stats, onError });
    this.running = false;
    this.busy = false;
    this.latest = -1; // id of the newest frame the camera delivered
    this.done = -1; // id of the last frame processed
    this.camera = new RateMeter();
    this.processed = new RateMeter();
    this.useVfc = typeof video.requestVideoFrameCallback === 'function';
    this.fallbackCount = 0;
    this.fallbackTime = -1;
  }

  start() {
    this.running = true;
    this.stats.framesSeen = 0;
    this.stats.framesProcessed = 0;
    this.stats.frameTimes = [];
    this.stats.frameIds = [];
    this.latest = this.done = -1;
    this._arm();
    return this;
  }

  stop() {
    this.running = false;
    if (this.handle != null) {
      if (this.useVfc) this.video.cancelVideoFrameCallback(this.handle);
      else cancelAnimationFrame(this.handle);
    }
    this.handle = null;
  }

  _arm() {
    if (!this.running) return;
    if (this.useVfc) {
      this.handle = this.video.requestVideoFrameCallback((now, meta) => this._frame(now, meta.presentedFrames));
    } else {
      this.handle = requestAnimationFrame((now) => this._frame(now, this._fallbackId()));
    }
  }

  /** Without rVFC: a new id whenever the decoded-frame count (or, lacking it, currentTime) moves. */
  _fallbackId() {
    const v = this.video;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
    const marker = q || v.webkitDecodedFrameCount || v.currentTime;
    if (marker !== this.fallbackTime) { this.fallbackTime = marker; this.fallbackCount++; }
    return this.fallbackCount;
  }

  _frame(now, id) {
    this._arm();
    if (id !== this.latest) {
      this.latest = id;
      this.stats.framesSeen++;
      this.camera.tick(now);
      this.stats.cameraFps = this.camera.rate;
    }
    this._pump();
  }

  async _pump() {
    if (this.busy || !this.running || this.latest === this.done) return;
    this.busy = true;
    const id = this.latest;
    try {
      const t0 = performance.now();
      await this.onFrame(id);
      const t1 = performance.now();
      if (!this.running) return;
      this.done = id;
      this.stats.framesProcessed++;
      keep(this.stats.frameTimes, t1 - t0);
      keep(this.stats.frameIds, id);
      this.processed.tick(t1);
      this.stats.fps = this.processed.rate;
    } catch (err) {
      this.onError(err);
    } finally {
      this.busy = false;
    }
    // A newer frame arrived while we were busy: take it now rather than waiting for the next one.
    if (this.running && this.latest !== this.done) queueMicrotask(() => this._pump());
  }
}
