// Pose overlay geometry and drawing. Pure functions first (tests and the timeline use them), then the
// PoseOverlay that keeps a canvas over a <video> in step with playback, size and threshold.

// The rectangle (in the element's CSS pixels) where the video picture is shown, for any object-fit.
// position: [x, y], each a fraction of the free space (0.5 centres) or {px} an offset in pixels.
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
  const place = (p, free) => (typeof p === 'object' ? p.px : free * p);
  return {
    x: place(position[0], boxWidth - width),
    y: place(position[1], boxHeight - height),
    width,
    height,
  };
}

// One object-position component: '30%', '12px', or a keyword.
function positionPart(part) {
  if (part === undefined) return 0.5;
  if (part.endsWith('%')) return parseFloat(part) / 100;
  if (part.endsWith('px')) return { px: parseFloat(part) };
  return part === 'left' || part === 'top' ? 0 : part === 'right' || part === 'bottom' ? 1 : 0.5;
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
  const parts = (style.objectPosition || '50% 50%').split(' ');
  const rect = contentRect(width, height, video.videoWidth, video.videoHeight, style.objectFit || 'contain',
    [positionPart(parts[0]), positionPart(parts[1] ?? parts[0])]);
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

// How fast a person can plausibly move between two samples, in body heights per second (walking is about
// 0.8, running 2-3: 3 covers a fast run), plus half a body height of slack for box jitter.
export const MAX_SPEED_HEIGHTS_PER_S = 3;
export const MAX_SIZE_RATIO = 2;

// Whether two samples of one track, dtMs apart, are too far apart (or too different in size) to be the same
// person moving: then the overlay shows the nearest sample instead of sliding a skeleton between them.
// Distances are in the picture's pixels (`aspect` = width / height), so tall and wide videos count alike.
export function implausibleJump(a, b, dtMs, aspect = 1) {
  const height = (box) => Math.max(1e-6, box[3] - box[1]);
  const ha = height(a.bbox), hb = height(b.bbox);
  if (Math.max(ha, hb) / Math.min(ha, hb) > MAX_SIZE_RATIO) return true;
  const [ax, ay] = bboxCenter(a.bbox), [bx, by] = bboxCenter(b.bbox);
  const distance = Math.hypot((ax - bx) * aspect, ay - by);
  const reach = Math.max(ha, hb) * (0.5 + MAX_SPEED_HEIGHTS_PER_S * Math.max(0, dtMs) / 1000);
  return distance > reach;
}

// The persons to draw at time t (ms): interpolated between the sampled frames around t. Before the first
// or after the last sample, the nearest sample is held for at most `hold` ms (one sampling period). A track
// whose two samples are an implausible jump apart is not interpolated: the nearer sample is shown.
export function personsAt(frames, t, hold, aspect = 1) {
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
    if (p && q) {
      if (!implausibleJump(p, q, span, aspect)) return [blendPerson(p, q, w)];
      return [w < 0.5 ? p : q];
    }
    const alone = p || q;
    return (p ? w < 0.5 : w >= 0.5) ? [alone] : [];
  });
}

// A Glasbey-style categorical palette (greedy max-min CIEDE2000 over an sRGB grid, kept away from black,
// white and the app's background, lightness 58-90 so every colour reads on a dark video): any two colours
// differ by at least 16.8 ΔE00 and neighbours (track n, n+1) by at least 28.
export const PALETTE = ['#f00fff', '#ff4b00', '#00a500', '#0096ff', '#d2a51e', '#00c3c3', '#e196a5', '#c3f01e',
  '#c3b4ff', '#3cffb4', '#ffb487', '#a5b478', '#78d2ff', '#ff3c96', '#9678ff', '#d27800'];

export function trackColour(person, index = 0) {
  const key = person?.track_id ?? index;
  return PALETTE[((key % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

// A person's height on screen in CSS pixels (from the box), the scale for line width and dot size.
export function personSizePx(rect, person) {
  return Math.max(1, (person.bbox[3] - person.bbox[1]) * rect.height);
}

export function lineWidthFor(sizePx) {
  return Math.min(5, Math.max(1, sizePx / 90));
}

// Keypoint dots: opacity and radius grow with the keypoint's score (a guess is faint and small).
export function keypointStyle(score, sizePx) {
  const s = Math.min(1, Math.max(0, score));
  return { alpha: 0.25 + 0.75 * s, radius: Math.min(6, Math.max(1.5, sizePx / 60)) * (0.55 + 0.45 * s) };
}

// The head of a person: the highest scoring head keypoint, else the top of the box (normalized coordinates).
function headPoint(person, threshold) {
  const head = person.keypoints.slice(0, 5).filter((kp) => kp[2] >= threshold);
  if (head.length) return [head.reduce((sum, kp) => sum + kp[0], 0) / head.length, Math.min(...head.map((kp) => kp[1]))];
  return [(person.bbox[0] + person.bbox[2]) / 2, person.bbox[1]];
}

// Draw persons on a 2D context whose units are CSS pixels; returns how many persons had something drawn.
// options: labels (track ids at the head), hidden (Set of track ids not drawn), highlight (a track id drawn
// boldly with its box while the others are dimmed).
export function drawPersons(ctx, rect, persons, skeleton, threshold, scale = 1, options = {}) {
  const { labels = false, hidden = new Set(), highlight = null } = options;
  let drawn = 0;
  ctx.save();
  ctx.beginPath();
  ctx.rect(rect.x, rect.y, rect.width, rect.height);
  ctx.clip();
  persons.forEach((person, index) => {
    if (person.track_id != null && hidden.has(person.track_id)) return;
    const colour = trackColour(person, index);
    const points = person.keypoints.map(([x, y, s]) => (s >= threshold ? toDisplay(rect, x, y) : null));
    if (!points.some(Boolean)) return;
    drawn += 1;
    const size = personSizePx(rect, person);
    const focused = highlight == null || person.track_id === highlight;
    const emphasis = highlight != null && focused ? 1.6 : 1;
    ctx.globalAlpha = focused ? 1 : 0.3;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = lineWidthFor(size) * scale * emphasis;
    ctx.lineCap = 'round';
    for (const [i, j] of skeleton) {
      if (!points[i] || !points[j]) continue;
      // A limb is as sure as its less sure end.
      ctx.globalAlpha = keypointStyle(Math.min(person.keypoints[i][2], person.keypoints[j][2]), size).alpha * (focused ? 1 : 0.3);
      ctx.beginPath();
      ctx.moveTo(...points[i]);
      ctx.lineTo(...points[j]);
      ctx.stroke();
    }
    points.forEach((point, k) => {
      if (!point) return;
      const style = keypointStyle(person.keypoints[k][2], size);
      ctx.globalAlpha = style.alpha * (focused ? 1 : 0.3);
      ctx.beginPath();
      ctx.arc(point[0], point[1], style.radius * scale * emphasis, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.globalAlpha = focused ? 1 : 0.3;
    if (highlight != null && focused) {
      const [x1, y1] = toDisplay(rect, person.bbox[0], person.bbox[1]);
      const [x2, y2] = toDisplay(rect, person.bbox[2], person.bbox[3]);
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5 * scale;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.setLineDash([]);
    }
    if (labels && person.track_id != null) {
      const [hx, hy] = toDisplay(rect, ...headPoint(person, threshold));
      const text = `#${person.track_id}`;
      ctx.font = `600 ${Math.round(12 * scale)}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'bottom';
      const y = Math.max(rect.y + 14 * scale, hy - 6 * scale);
      ctx.lineWidth = 3 * scale;
      ctx.strokeStyle = 'rgba(0,0,0,0.85)';
      ctx.strokeText(text, hx, y);
      ctx.fillStyle = colour;
      ctx.fillText(text, hx, y);
    }
    ctx.globalAlpha = 1;
  });
  ctx.restore();
  return drawn;
}

// Keeps `canvas` (laid exactly over `video`) showing the skeletons at the video's current time.
export class PoseOverlay {
  constructor(video, canvas, document) {
    this.video = video;
    this.canvas = canvas;
    this.skeleton = document.skeleton;
    this.hold = 1000 / (document.fps || 1);
    this.aspect = document.video?.width && document.video?.height ? document.video.width / document.video.height : 1;
    this.threshold = 0.3;
    this.options = { labels: false, hidden: new Set(), highlight: null };
    this.setFrames(document.frames);
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

  // The sampled frames (sorted here); called again as more result pages arrive.
  setFrames(frames) {
    this.frames = [...frames].sort((p, q) => p.timestamp_ms - q.timestamp_ms);
    if (this.canvas) this.draw();
  }

  setThreshold(value) {
    this.threshold = value;
    this.draw();
  }

  // {labels, hidden, highlight}: any subset; the rest stay as they were.
  setOptions(options) {
    Object.assign(this.options, options);
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
    if (!this.frames || !video) return;
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
      drawn = drawPersons(ctx, rect, personsAt(this.frames, t, this.hold, this.aspect), this.skeleton,
        this.threshold, 1, this.options);
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
