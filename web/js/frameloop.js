// One callback per distinct camera frame, never two at once, dropping frames while busy.
// requestVideoFrameCallback where the browser has it (Chrome, Safari, Firefox 132+); elsewhere
// requestAnimationFrame plus a check that the video shows a frame we have not processed yet.
// The camera's rate comes from the video's own frame counter, not from our callbacks: while the
// page is busy they come only a few times a second, each after several new camera frames.

/** Events per second over a sliding window (ms); tick(now, n) counts n events at `now`. */
export class RateMeter {
  constructor(windowMs = 2000) { this.windowMs = windowMs; this.marks = []; this.total = 0; }
  tick(now, n = 1) {
    this.total += n;
    this.marks.push([now, this.total]);
    while (this.marks.length > 2 && now - this.marks[0][0] > this.windowMs) this.marks.shift();
  }
  get rate() {
    const m = this.marks;
    if (m.length < 2) return 0;
    const [t0, n0] = m[0], [t1, n1] = m[m.length - 1];
    return (1000 * (n1 - n0)) / Math.max(1, t1 - t0);
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
 * frames are dropped, a frame is never processed twice). `stats` receives framesSeen (frames
 * the camera delivered), framesProcessed, cameraFps (delivered per second), fps (processed per
 * second) and, for the last <= 240 processed frames, frameTimes (ms each onFrame took) and
 * frameIds (which camera frame it was).
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
    this.delivered = null; // the video's count of frames shown so far, at the last callback
  }

  start() {
    this.running = true;
    // A new stream: no count and no rate of the one before stands.
    Object.assign(this.stats, { framesSeen: 0, framesProcessed: 0, frameTimes: [], frameIds: [], cameraFps: 0, fps: 0 });
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
      this.handle = this.video.requestVideoFrameCallback(
        (now, meta) => this._frame(now, meta.presentedFrames, meta.presentedFrames));
    } else {
      this.handle = requestAnimationFrame((now) => this._frame(now, this._fallbackId(), this._decoded()));
    }
  }

  /** Frames the video decoded so far, where the browser says (else null). */
  _decoded() {
    const v = this.video;
    if (v.getVideoPlaybackQuality) return v.getVideoPlaybackQuality().totalVideoFrames;
    return v.webkitDecodedFrameCount ?? null;
  }

  /** Without rVFC: a new id whenever the decoded-frame count (or, lacking it, currentTime) moves. */
  _fallbackId() {
    const v = this.video;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
    const marker = q || v.webkitDecodedFrameCount || v.currentTime;
    if (marker !== this.fallbackTime) { this.fallbackTime = marker; this.fallbackCount++; }
    return this.fallbackCount;
  }

  /** A callback showing frame `id`; `count`: the video's frame counter (null: unknown). */
  _frame(now, id, count) {
    this._arm();
    if (id !== this.latest) {
      this.latest = id;
      // Frames the camera delivered since the last callback: all of them, not just this one
      // (1 when the counter is unknown, on the first callback or after it restarted).
      const n = count != null && this.delivered != null && count > this.delivered ? count - this.delivered : 1;
      if (count != null) this.delivered = count;
      this.stats.framesSeen += n;
      this.camera.tick(now, n);
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
