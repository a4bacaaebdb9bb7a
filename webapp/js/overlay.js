// Pose overlay geometry and drawing. Pure functions first (tests and the timeline use them), then the
// PoseOverlay that keeps a canvas over a <video> in step with playback, size and threshold.

// The rectangle (in the element's CSS pixels) where the video picture is shown, for any object-fit.
export function contentRect(boxWidth, boxHeight, videoWidth, videoHeight, fit = 'contain', position = [0.5, 0.5]) {
  if (!videoWidth || !videoHeight || !boxWidth || !boxHeight) return null;
  let width = boxWidth, height = boxHeight;
  if (fit !== 'fill') {
    const sx = boxWidth / videoWidth, sy = boxHeight / videoHeight;
    let scale = fit === 'cover' ? Math.max(sx, sy) : fit === 'none' ? 1 : Math.min(sx, sy);
    if (fit === 'scale-down') scale = Math.min(1, Math.min(sx, sy));
    width = videoWidth * scale;
    height = videoHeight * scale;
  }
  return {
    x: (boxWidth - width) * position[0],
    y: (boxHeight - height) * position[1],
    width,
    height,
  };
}

// The displayed picture of a <video> in coordinates relative to `relativeTo` (the overlay canvas).
export function displayedVideoRect(video, relativeTo = video) {
  const style = getComputedStyle(video);
  const px = (name) => parseFloat(style[name]) || 0;
  const box = video.getBoundingClientRect();
  const origin = relativeTo.getBoundingClientRect();
  const left = box.left - origin.left + px('borderLeftWidth') + px('paddingLeft');
  const top = box.top - origin.top + px('borderTopWidth') + px('paddingTop');
  const width = box.width - px('borderLeftWidth') - px('borderRightWidth') - px('paddingLeft') - px('paddingRight');
  const height = box.height - px('borderTopWidth') - px('borderBottomWidth') - px('paddingTop') - px('paddingBottom');
  const position = (style.objectPosition || '50% 50%').split(' ').map((part) => (
    part.endsWith('%') ? parseFloat(part) / 100 : part === 'left' || part === 'top' ? 0 : part === 'right' || part === 'bottom' ? 1 : 0.5));
  const rect = contentRect(width, height, video.videoWidth, video.videoHeight, style.objectFit || 'contain',
    [position[0] ?? 0.5, position[1] ?? position[0] ?? 0.5]);
  return rect && { ...rect, x: rect.x + left, y: rect.y + top };
}

export function toDisplay(rect, nx, ny) {
  return [rect.x + nx * rect.width, rect.y + ny * rect.height];
}

// Index of the last frame at or before t (ms) in frames sorted by timestamp_ms; -1 when t is before all.
export function frameIndexAt(frames, t) {
  let lo = 0, hi = frames.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (frames[mid].timestamp_ms <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return found;
}

function bboxCenter(b) { return [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]; }

// Pairs [a, b] of persons that are the same person in two frames: by track_id when both have one,
// else greedily by nearest bbox centre (within a bbox's size). Unpaired persons come back alone.
export function matchPersons(fromPersons, toPersons) {
  const pairs = [];
  const usedTo = new Set();
  const pending = [];
  fromPersons.forEach((person) => {
    if (person.track_id !== null && person.track_id !== undefined) {
      const j = toPersons.findIndex((other, k) => !usedTo.has(k) && other.track_id === person.track_id);
      if (j >= 0) { usedTo.add(j); pairs.push([person, toPersons[j]]); return; }
    }
    pending.push(person);
  });
  const candidates = [];
  pending.forEach((person, i) => {
    const [ax, ay] = bboxCenter(person.bbox);
    const reach = Math.max(person.bbox[2] - person.bbox[0], person.bbox[3] - person.bbox[1]);
    toPersons.forEach((other, j) => {
      if (usedTo.has(j)) return;
      if (person.track_id != null && other.track_id != null) return; // different tracks never merge
      const [bx, by] = bboxCenter(other.bbox);
      const distance = Math.hypot(ax - bx, ay - by);
      if (distance <= reach) candidates.push([distance, i, j]);
    });
  });
  candidates.sort((p, q) => p[0] - q[0]);
  const usedFrom = new Set();
  for (const [, i, j] of candidates) {
    if (usedFrom.has(i) || usedTo.has(j)) continue;
    usedFrom.add(i); usedTo.add(j);
    pairs.push([pending[i], toPersons[j]]);
  }
  pending.forEach((person, i) => { if (!usedFrom.has(i)) pairs.push([person, null]); });
  toPersons.forEach((person, j) => { if (!usedTo.has(j)) pairs.push([null, person]); });
  return pairs;
}

const lerp = (a, b, w) => a + (b - a) * w;

function blendPerson(a, b, w) {
  return {
    track_id: a.track_id ?? b.track_id,
    score: lerp(a.score, b.score, w),
    bbox: a.bbox.map((v, i) => lerp(v, b.bbox[i], w)),
    keypoints: a.keypoints.map((kp, i) => [lerp(kp[0], b.keypoints[i][0], w), lerp(kp[1], b.keypoints[i][1], w),
      Math.min(kp[2], b.keypoints[i][2])]),
  };
}

// The persons to draw at time t (ms): interpolated between the sampled frames around t. Before the first
// or after the last sample, the nearest sample is held for at most `hold` ms (one sampling period).
export function personsAt(frames, t, hold) {
  if (!frames.length) return [];
  const i = frameIndexAt(frames, t);
  if (i < 0) return t >= frames[0].timestamp_ms - hold ? frames[0].persons : [];
  const a = frames[i];
  const b = frames[i + 1];
  if (!b) return t <= a.timestamp_ms + hold ? a.persons : [];
  const span = b.timestamp_ms - a.timestamp_ms;
  const w = span > 0 ? (t - a.timestamp_ms) / span : 0;
  if (w === 0) return a.persons;
  return matchPersons(a.persons, b.persons).flatMap(([p, q]) => {
    if (p && q) return [blendPerson(p, q, w)];
    const alone = p || q;
    return (p ? w < 0.5 : w >= 0.5) ? [alone] : [];
  });
}

const PALETTE = ['#ff3b30', '#34c759', '#0a84ff', '#ffcc00', '#af52de', '#ff9500', '#5ac8fa', '#ff2d55',
  '#a2845e', '#30d158', '#64d2ff', '#bf5af2'];

export function trackColour(person, index) {
  const key = person.track_id ?? index;
  return PALETTE[((key % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

// Draw persons on a 2D context whose units are CSS pixels; returns how many persons had something drawn.
export function drawPersons(ctx, rect, persons, skeleton, threshold, scale = 1) {
  let drawn = 0;
  persons.forEach((person, index) => {
    const colour = trackColour(person, index);
    const points = person.keypoints.map(([x, y, s]) => (s >= threshold ? toDisplay(rect, x, y) : null));
    if (!points.some(Boolean)) return;
    drawn += 1;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 3 * scale;
    ctx.lineCap = 'round';
    for (const [i, j] of skeleton) {
      if (!points[i] || !points[j]) continue;
      ctx.beginPath();
      ctx.moveTo(...points[i]);
      ctx.lineTo(...points[j]);
      ctx.stroke();
    }
    for (const point of points) {
      if (!point) continue;
      ctx.beginPath();
      ctx.arc(point[0], point[1], 4 * scale, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
  return drawn;
}

// Keeps `canvas` (laid exactly over `video`) showing the skeletons at the video's current time.
export class PoseOverlay {
  constructor(video, canvas, document) {
    this.video = video;
    this.canvas = canvas;
    this.frames = [...document.frames].sort((p, q) => p.timestamp_ms - q.timestamp_ms);
    this.skeleton = document.skeleton;
    this.hold = 1000 / (document.fps || 1);
    this.threshold = 0.3;
    this.frameRequest = 0;
    const redraw = () => this.draw();
    this.resizeObserver = new ResizeObserver(redraw);
    this.resizeObserver.observe(video);
    this.listeners = ['loadedmetadata', 'loadeddata', 'seeked', 'seeking', 'timeupdate', 'pause', 'resize']
      .map((name) => [name, redraw]);
    this.listeners.push(['play', () => this.loop()]);
    this.listeners.forEach(([name, fn]) => video.addEventListener(name, fn));
    window.addEventListener('resize', redraw);
    this.windowResize = redraw;
    this.draw();
  }

  setThreshold(value) {
    this.threshold = value;
    this.draw();
  }

  loop() {
    cancelAnimationFrame(this.frameRequest);
    const step = () => {
      this.draw();
      if (!this.video.paused && !this.video.ended) this.frameRequest = requestAnimationFrame(step);
    };
    this.frameRequest = requestAnimationFrame(step);
  }

  draw() {
    const { canvas, video } = this;
    const ratio = window.devicePixelRatio || 1;
    const box = canvas.getBoundingClientRect();
    const width = Math.max(1, Math.round(box.width * ratio));
    const height = Math.max(1, Math.round(box.height * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const rect = displayedVideoRect(video, canvas);
    let drawn = 0;
    const t = video.currentTime * 1000;
    if (rect) {
      ctx.setTransform(width / box.width, 0, 0, height / box.height, 0, 0);
      drawn = drawPersons(ctx, rect, personsAt(this.frames, t, this.hold), this.skeleton, this.threshold);
    }
    // For tests and debugging: what was drawn, for which time, into which picture rectangle.
    canvas.dataset.time = String(Math.round(t));
    canvas.dataset.persons = String(drawn);
    canvas.dataset.rect = rect ? [rect.x, rect.y, rect.width, rect.height].map((v) => v.toFixed(1)).join(',') : '';
  }

  destroy() {
    cancelAnimationFrame(this.frameRequest);
    this.resizeObserver.disconnect();
    this.listeners.forEach(([name, fn]) => this.video.removeEventListener(name, fn));
    window.removeEventListener('resize', this.windowResize);
  }
}
