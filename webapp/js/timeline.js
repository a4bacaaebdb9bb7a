// The timeline under the video: a marker per sampled frame with people (taller for more people, in the
// colour of the first person's track), the playhead, and click/drag to seek.

import { trackColour } from './overlay.js';

export class Timeline {
  constructor(canvas, video, document) {
    this.canvas = canvas;
    this.video = video;
    this.frames = document.frames;
    this.durationMs = document.video?.duration_ms || 0;
    this.threshold = 0;
    const redraw = () => this.draw();
    this.resizeObserver = new ResizeObserver(redraw);
    this.resizeObserver.observe(canvas);
    this.listeners = ['timeupdate', 'seeked', 'loadedmetadata', 'durationchange'].map((name) => [name, redraw]);
    this.listeners.forEach(([name, fn]) => video.addEventListener(name, fn));
    const seek = (event) => {
      if (event.type === 'pointermove' && !(event.buttons & 1)) return;
      const box = canvas.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      video.currentTime = (fraction * this.duration()) / 1000;
    };
    canvas.addEventListener('pointerdown', seek);
    canvas.addEventListener('pointermove', seek);
    this.draw();
  }

  duration() {
    const media = Number.isFinite(this.video.duration) ? this.video.duration * 1000 : 0;
    const last = this.frames.length ? this.frames[this.frames.length - 1].timestamp_ms : 0;
    return Math.max(media, this.durationMs, last, 1);
  }

  markers() {
    return this.frames.filter((frame) => frame.persons.length > 0);
  }

  draw() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const box = canvas.getBoundingClientRect();
    canvas.width = Math.max(1, Math.round(box.width * ratio));
    canvas.height = Math.max(1, Math.round(box.height * ratio));
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, box.width, box.height);
    ctx.fillStyle = '#2b2f36';
    ctx.fillRect(0, box.height / 2 - 1, box.width, 2);
    const duration = this.duration();
    const most = Math.max(1, ...this.frames.map((frame) => frame.persons.length));
    const width = Math.max(2, box.width / Math.max(1, this.frames.length) - 1);
    for (const frame of this.markers()) {
      const x = (frame.timestamp_ms / duration) * box.width;
      const h = 6 + (box.height - 8) * (frame.persons.length / most);
      ctx.fillStyle = trackColour(frame.persons[0], 0);
      ctx.fillRect(Math.min(box.width - width, x), box.height - h, width, h);
    }
    const playhead = ((this.video.currentTime * 1000) / duration) * box.width;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(Math.min(box.width - 2, Math.max(0, playhead - 1)), 0, 2, box.height);
    canvas.dataset.markers = String(this.markers().length);
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.listeners.forEach(([name, fn]) => this.video.removeEventListener(name, fn));
  }
}
