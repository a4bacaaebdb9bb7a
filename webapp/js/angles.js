// Joint angles of one person over time (knees and elbows), drawn as a small chart with the playhead.

import { clearedCanvas, el } from './dom.js';

export const JOINTS = [
  // name, [a, joint, c] keypoint indices (COCO 17), colour
  ['left knee', [11, 13, 15], '#ffb487'],
  ['right knee', [12, 14, 16], '#00c3c3'],
  ['left elbow', [5, 7, 9], '#c3b4ff'],
  ['right elbow', [6, 8, 10], '#c3f01e'],
];

// The angle at b (degrees, 0-180) between b->a and b->c in picture pixels (x scaled by the aspect ratio).
export function jointAngle(a, b, c, aspect = 1) {
  const ux = (a[0] - b[0]) * aspect, uy = a[1] - b[1];
  const vx = (c[0] - b[0]) * aspect, vy = c[1] - b[1];
  const norm = Math.hypot(ux, uy) * Math.hypot(vx, vy);
  if (!norm) return null;
  return (Math.acos(Math.min(1, Math.max(-1, (ux * vx + uy * vy) / norm))) * 180) / Math.PI;
}

// {joint name: degrees or null} for one person; a joint needs all three keypoints at or above threshold.
export function personAngles(person, aspect = 1, threshold = 0.3) {
  const angles = {};
  for (const [name, [i, j, k]] of JOINTS) {
    const [a, b, c] = [person.keypoints[i], person.keypoints[j], person.keypoints[k]];
    angles[name] = a[2] >= threshold && b[2] >= threshold && c[2] >= threshold ? jointAngle(a, b, c, aspect) : null;
  }
  return angles;
}

export class AngleChart {
  constructor(canvas, readout, video, document) {
    this.canvas = canvas;
    this.readout = readout;
    this.video = video;
    this.aspect = document.video?.width && document.video?.height ? document.video.width / document.video.height : 1;
    this.durationMs = document.video?.duration_ms || 0;
    this.frames = document.frames;
    this.trackId = null;
    this.threshold = 0.3;
    this.series = [];
    const redraw = () => this.draw();
    this.resizeObserver = new ResizeObserver(redraw);
    this.resizeObserver.observe(canvas);
    this.listeners = ['timeupdate', 'seeked', 'loadedmetadata'].map((name) => [name, redraw]);
    this.listeners.forEach(([name, fn]) => video.addEventListener(name, fn));
  }

  setFrames(frames) { this.frames = frames; this.compute(); }

  setTrack(trackId) { this.trackId = trackId; this.compute(); }

  setThreshold(threshold) { this.threshold = threshold; this.compute(); }

  compute() {
    this.series = [];
    if (this.trackId != null) {
      for (const frame of this.frames) {
        const person = frame.persons.find((p) => p.track_id === this.trackId);
        if (person) this.series.push({ t: frame.timestamp_ms, angles: personAngles(person, this.aspect, this.threshold) });
      }
      this.series.sort((a, b) => a.t - b.t);
    }
    this.draw();
  }

  duration() {
    const media = Number.isFinite(this.video.duration) ? this.video.duration * 1000 : 0;
    const last = this.frames.length ? Math.max(...this.frames.map((f) => f.timestamp_ms)) : 0;
    return Math.max(media, this.durationMs, last, 1);
  }

  // The person's sample at or before the playhead (null when none, or the person is not there then).
  current() {
    const t = this.video.currentTime * 1000;
    let found = null;
    for (const sample of this.series) { if (sample.t <= t + 0.5) found = sample; else break; }
    return found;
  }

  draw() {
    const { canvas } = this;
    const { ctx, box } = clearedCanvas(canvas);
    const pad = 4;
    const y = (degrees) => pad + (1 - degrees / 180) * (box.height - 2 * pad);
    ctx.strokeStyle = '#3a414c';
    ctx.lineWidth = 1;
    for (const degrees of [0, 90, 180]) {
      ctx.beginPath(); ctx.moveTo(0, y(degrees)); ctx.lineTo(box.width, y(degrees)); ctx.stroke();
    }
    const duration = this.duration();
    const x = (t) => (t / duration) * box.width;
    for (const [name, , colour] of JOINTS) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let open = false;
      let previous = null;
      for (const sample of this.series) {
        const value = sample.angles[name];
        // A gap (joint not seen, or the person absent for over a second) breaks the line.
        if (value == null || (previous !== null && sample.t - previous > 1000)) open = false;
        if (value != null) {
          if (open) ctx.lineTo(x(sample.t), y(value)); else ctx.moveTo(x(sample.t), y(value));
          open = true;
        }
        previous = sample.t;
      }
      ctx.stroke();
    }
    const playhead = x(this.video.currentTime * 1000);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(Math.min(box.width - 2, Math.max(0, playhead - 1)), 0, 2, box.height);
    canvas.dataset.samples = String(this.series.length);
    const sample = this.current();
    if (this.trackId == null) {
      this.readout.replaceChildren('Follow a person in the people panel to chart their knee and elbow angles.');
    } else {
      this.readout.replaceChildren(el('strong', {}, `#${this.trackId}`), ' ',
        ...JOINTS.map(([name, , colour]) => {
          const value = sample?.angles[name];
          return el('span', { class: 'angle', 'data-joint': name },
            el('span', { class: 'swatch', style: { background: colour } }), ` ${name} `,
            value == null ? '–' : `${Math.round(value)}°`);
        }));
    }
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.listeners.forEach(([name, fn]) => this.video.removeEventListener(name, fn));
  }
}
