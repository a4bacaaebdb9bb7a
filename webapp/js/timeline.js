// The timeline under the video: how many people each sampled frame has (a step chart), where the followed
// person is present, the playhead; click or drag to seek, and as a keyboard slider (arrows step between
// sampled frames, Home/End, Page Up/Down by a tenth).

import { clearedCanvas } from './dom.js';
import { formatClock } from './people.js';
import { trackColour } from './overlay.js';

export const COUNT_COLOUR = '#6ea8fe';

// Sampled frames sorted by time -> [{t, count}].
export function peopleCounts(frames) {
  return [...frames].sort((a, b) => a.timestamp_ms - b.timestamp_ms)
    .map((frame) => ({ t: frame.timestamp_ms, count: frame.persons.length }));
}

// The sampled time after (direction 1) or before (-1) t, in ms; null at the ends.
export function neighbourSample(times, t, direction) {
  if (direction > 0) return times.find((time) => time > t + 0.5) ?? null;
  for (let i = times.length - 1; i >= 0; i -= 1) if (times[i] < t - 0.5) return times[i];
  return null;
}

export class Timeline {
  constructor(canvas, video, document) {
    this.canvas = canvas;
    this.video = video;
    this.durationMs = document.video?.duration_ms || 0;
    this.follow = null;
    this.setFrames(document.frames, false);
    canvas.tabIndex = 0;
    canvas.setAttribute('role', 'slider');
    canvas.setAttribute('aria-label', 'timeline: people per sampled frame; arrows step between samples');
    canvas.setAttribute('aria-valuemin', '0');
    const redraw = () => this.draw();
    this.resizeObserver = new ResizeObserver(redraw);
    this.resizeObserver.observe(canvas);
    this.listeners = ['timeupdate', 'seeked', 'loadedmetadata', 'durationchange'].map((name) => [name, redraw]);
    this.listeners.forEach(([name, fn]) => video.addEventListener(name, fn));
    const seek = (event) => {
      if (event.type === 'pointermove' && !(event.buttons & 1)) return;
      const box = canvas.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      this.seekTo(fraction * this.duration());
    };
    canvas.addEventListener('pointerdown', seek);
    canvas.addEventListener('pointermove', seek);
    canvas.addEventListener('keydown', (event) => {
      const t = this.video.currentTime * 1000;
      const times = this.counts.map((c) => c.t);
      let target = null;
      if (event.key === 'ArrowRight' || event.key === 'ArrowUp') target = neighbourSample(times, t, 1);
      else if (event.key === 'ArrowLeft' || event.key === 'ArrowDown') target = neighbourSample(times, t, -1);
      else if (event.key === 'Home') target = 0;
      else if (event.key === 'End') target = this.duration();
      else if (event.key === 'PageUp') target = Math.min(this.duration(), t + this.duration() / 10);
      else if (event.key === 'PageDown') target = Math.max(0, t - this.duration() / 10);
      else return;
      event.preventDefault();
      event.stopPropagation();
      if (target !== null) this.seekTo(target);
    });
    this.draw();
  }

  seekTo(ms) {
    this.video.currentTime = ms / 1000;
    this.draw();
  }

  setFrames(frames, redraw = true) {
    this.frames = frames;
    this.counts = peopleCounts(frames);
    this.most = Math.max(1, ...this.counts.map((c) => c.count));
    if (redraw) this.draw();
  }

  setFollow(trackId) {
    this.follow = trackId;
    this.draw();
  }

  duration() {
    const media = Number.isFinite(this.video.duration) ? this.video.duration * 1000 : 0;
    const last = this.counts.length ? this.counts[this.counts.length - 1].t : 0;
    return Math.max(media, this.durationMs, last, 1);
  }

  countAt(t) {
    let count = 0;
    for (const c of this.counts) { if (c.t <= t + 0.5) count = c.count; else break; }
    return count;
  }

  draw() {
    const { canvas } = this;
    const { ctx, box } = clearedCanvas(canvas);
    const duration = this.duration();
    const x = (t) => (t / duration) * box.width;
    const band = this.follow == null ? 0 : 4;
    const top = 2, bottom = box.height - band;
    const y = (count) => bottom - (count / this.most) * (bottom - top);
    // People count: a step area, each sample holding until the next one.
    ctx.fillStyle = COUNT_COLOUR;
    this.counts.forEach((c, i) => {
      if (!c.count) return;
      const next = this.counts[i + 1]?.t ?? Math.min(duration, c.t + (this.counts.length > 1 ? this.counts[1].t - this.counts[0].t : 500));
      ctx.fillRect(x(c.t), y(c.count), Math.max(1, x(next) - x(c.t)), bottom - y(c.count));
    });
    if (this.follow != null) {
      ctx.fillStyle = trackColour({ track_id: this.follow });
      this.frames.forEach((frame) => {
        if (frame.persons.some((p) => p.track_id === this.follow)) ctx.fillRect(x(frame.timestamp_ms), box.height - band, 3, band);
      });
    }
    // The scale: the most people in one frame, legible over the bars.
    ctx.font = '10px system-ui, sans-serif';
    ctx.textBaseline = 'top';
    const label = `max ${this.most}`;
    ctx.fillStyle = 'rgba(20, 23, 28, 0.8)';
    ctx.fillRect(1, 1, ctx.measureText(label).width + 6, 13);
    ctx.fillStyle = '#e6e9ee';
    ctx.fillText(label, 4, 2);
    const now = this.video.currentTime * 1000;
    const playhead = x(now);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(Math.min(box.width - 2, Math.max(0, playhead - 1)), 0, 2, box.height);
    const count = this.countAt(now);
    canvas.setAttribute('aria-valuemax', String(Math.round(duration / 100) / 10));
    canvas.setAttribute('aria-valuenow', String(Math.round(now / 100) / 10));
    canvas.setAttribute('aria-valuetext', `${formatClock(now)}, ${count} ${count === 1 ? 'person' : 'people'}`);
    canvas.dataset.samples = String(this.counts.length);
    canvas.dataset.most = String(this.most);
    canvas.dataset.markers = String(this.counts.filter((c) => c.count > 0).length);
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.listeners.forEach(([name, fn]) => this.video.removeEventListener(name, fn));
  }
}
