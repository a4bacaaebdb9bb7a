// The Pose tab: the asset's video with every person's skeleton over it, player controls (step between
// sampled frames, speed), the people-count timeline, the people panel, a joint-angle chart for the followed
// person, and downloads. Results are drawn as their pages arrive.

import { AngleChart } from './angles.js';
import { el } from './dom.js';
import { PoseOverlay } from './overlay.js';
import { PeoplePanel, formatClock } from './people.js';
import { Timeline, neighbourSample } from './timeline.js';

export const SPEEDS = [0.25, 0.5, 1, 1.5, 2];
export const SHORTCUTS = [
  ['Space or k', 'play / pause'],
  [',', 'previous sampled frame'],
  ['.', 'next sampled frame'],
  ['[ and ]', 'slower / faster'],
  ['i', 'show / hide track ids'],
  ['f', 'full screen with the skeletons'],
];

// A file name for downloads that says which video the results come from: "clip-PoseDetection.json".
export function downloadName(sourceName, operator, extension) {
  const stem = (sourceName || 'video').replace(/\.[A-Za-z0-9]{1,5}$/, '').replace(/[^A-Za-z0-9._-]+/g, '_') || 'video';
  return `${stem}-${operator}.${extension}`;
}

function saveBlob(blob, filename) {
  const link = el('a', { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// getDocument({signal, onPage}): how to load the results (the API's pages, or a cached document).
export async function renderPoseTab(container, api, asset, signal, { onError = () => {}, getDocument = null } = {}) {
  const assetId = asset.asset_id;
  container.replaceChildren(el('p', { class: 'muted', role: 'status' }, 'loading results…'));
  const mediaPromise = api.mediaUrl(assetId);
  let view = null;
  const load = getDocument || ((options) => api.getDocument(assetId, api.config.operator, options));
  const document = await load({
    signal,
    onPage: (doc, pages, more) => {
      if (signal.aborted) return;
      if (!view) view = buildView(container, api, asset, doc, mediaPromise, signal, onError);
      else view.update(doc);
      view.loading(more ? `loading results: ${doc.frames.length} frames (${pages} pages) so far…` : '');
    },
  });
  if (signal.aborted || !view) return () => view?.destroy();
  view.complete(document);
  return () => view.destroy();
}

function buildView(container, api, asset, document, mediaPromise, signal, onError) {
  const assetId = asset.asset_id;
  const aspect = document.video.width / document.video.height;
  const video = el('video', { class: 'pose-video', controls: '', preload: 'auto', muted: '', playsinline: '',
    'aria-label': `video ${asset.source_name}` });
  const overlay = el('canvas', { class: 'pose-overlay', 'aria-hidden': 'true' });
  const stage = el('div', { class: 'stage', style: { '--aspect': aspect.toFixed(5) } }, video, overlay);
  const timelineCanvas = el('canvas', { class: 'pose-timeline', title: 'people per sampled frame; click to seek' });
  const slider = el('input', { type: 'range', min: '0', max: '1', step: '0.05', value: '0.3', id: 'threshold' });
  const sliderValue = el('output', { for: 'threshold' }, '0.30');
  const labels = el('input', { type: 'checkbox', id: 'show-ids' });
  const speed = el('select', { id: 'speed' }, SPEEDS.map((s) => el('option', { value: String(s), selected: s === 1 }, `${s}×`)));
  const previous = el('button', { type: 'button', class: 'step', id: 'step-back', 'aria-label': 'previous sampled frame',
    title: 'previous sampled frame (,)' }, '◀ frame');
  const next = el('button', { type: 'button', class: 'step', id: 'step-forward', 'aria-label': 'next sampled frame',
    title: 'next sampled frame (.)' }, 'frame ▶');
  const clock = el('output', { class: 'clock', 'aria-live': 'off' }, '0:00.0');
  const fullscreen = el('button', { type: 'button', id: 'fullscreen', title: 'full screen with the skeletons (f)' },
    'Full screen');
  const mediaNote = el('span', { class: 'muted media-note' });
  const status = el('p', { class: 'muted loading-note', role: 'status' });
  const summary = el('p', { class: 'summary' });
  const json = el('button', { type: 'button', class: 'download', 'data-format': 'json', disabled: true }, 'JSON');
  const exports = ['coco', 'csv', 'mp4'].map((format) => el('button', { type: 'button', class: 'download export',
    'data-format': format, disabled: !api.canExport(),
    title: api.canExport() ? `download ${format.toUpperCase()} from the API` : 'this API has no export route' },
  format === 'mp4' ? 'MP4 with overlay' : format.toUpperCase()));
  const peopleBox = el('div', { class: 'people-panel' });
  const angleCanvas = el('canvas', { class: 'angle-chart', 'aria-hidden': 'true' });
  const angleReadout = el('p', { class: 'angle-readout', 'aria-live': 'polite' });
  const shortcuts = el('details', { class: 'shortcuts' }, el('summary', {}, 'Keyboard shortcuts'),
    el('dl', {}, SHORTCUTS.flatMap(([key, what]) => [el('dt', {}, el('kbd', {}, key)), el('dd', {}, what)])));

  container.replaceChildren(
    summary, status,
    el('div', { class: 'pose-layout' },
      el('div', { class: 'pose-main' },
        el('div', { class: 'stage-wrap' }, stage),
        el('div', { class: 'controls player' }, previous, next, clock, fullscreen,
          el('label', { for: 'speed' }, 'speed'), speed,
          el('label', { for: 'threshold' }, 'keypoint confidence ≥'), slider, sliderValue,
          el('label', { class: 'row', for: 'show-ids' }, labels, 'track ids'), mediaNote),
        timelineCanvas,
        el('section', { class: 'angles', 'aria-label': 'joint angles of the followed person' },
          el('h3', {}, 'Joint angles'), angleReadout, angleCanvas),
        el('div', { class: 'controls downloads' }, el('span', { class: 'muted' }, 'Download'), json, ...exports),
        shortcuts),
      el('section', { class: 'people-side', 'aria-label': 'people' }, el('h3', {}, 'People'), peopleBox)));

  const poses = new PoseOverlay(video, overlay, document);
  const timeline = new Timeline(timelineCanvas, video, document);
  const angles = new AngleChart(angleCanvas, angleReadout, video, document);
  let followed = null;
  const people = new PeoplePanel(peopleBox, {
    seek: (ms) => { video.currentTime = ms / 1000; },
    follow: (trackId) => { followed = trackId; angles.setTrack(trackId); timeline.setFollow(trackId); },
    highlight: (trackId) => poses.setOptions({ highlight: trackId }),
    hidden: (set) => poses.setOptions({ hidden: set }),
  });
  let current = document;
  const describe = (doc) => {
    const withPeople = doc.frames.filter((frame) => frame.persons.length).length;
    summary.textContent = `${doc.frames.length} sampled frames at ${doc.fps} fps, ${withPeople} with people · `
      + `backend ${doc.backend} · ${doc.video.width}×${doc.video.height}`;
  };
  describe(document);
  people.setFrames(document.frames);
  angles.compute();

  // Sampled times to step through: the followed person's samples while following, else every sample.
  const sampleTimes = () => current.frames
    .filter((frame) => followed == null || frame.persons.some((p) => p.track_id === followed))
    .map((frame) => frame.timestamp_ms).sort((a, b) => a - b);
  const step = (direction) => {
    video.pause();
    const target = neighbourSample(sampleTimes(), video.currentTime * 1000, direction);
    if (target !== null) video.currentTime = target / 1000;
  };
  previous.addEventListener('click', () => step(-1));
  next.addEventListener('click', () => step(1));
  speed.addEventListener('change', () => { video.playbackRate = Number(speed.value); });
  slider.addEventListener('input', () => {
    const value = Number(slider.value);
    sliderValue.textContent = value.toFixed(2);
    poses.setThreshold(value);
    angles.setThreshold(value);
  });
  labels.addEventListener('change', () => poses.setOptions({ labels: labels.checked }));
  const html = window.document; // (`document` here is the results document)
  // Full screen is the stage's (video and overlay together): the video's own full screen would drop the
  // skeletons, so it is swapped for the stage's.
  const toggleFullscreen = () => {
    if (html.fullscreenElement) html.exitFullscreen().catch(() => {});
    else stage.requestFullscreen().catch(onError);
  };
  fullscreen.addEventListener('click', toggleFullscreen);
  const onFullscreen = () => {
    if (html.fullscreenElement === video) {
      html.exitFullscreen().then(() => stage.requestFullscreen()).catch(() => {});
    }
    fullscreen.textContent = html.fullscreenElement === stage ? 'Exit full screen' : 'Full screen';
  };
  html.addEventListener('fullscreenchange', onFullscreen);
  const tick = () => { clock.textContent = formatClock(video.currentTime * 1000); };
  ['timeupdate', 'seeked'].forEach((name) => video.addEventListener(name, tick));

  const onKey = (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'SELECT', 'TEXTAREA'].includes(target.tagName))
      && !(target.type === 'range' || target.type === 'checkbox')) return;
    if (target instanceof HTMLButtonElement && event.key === ' ') return;
    if (target === video && (event.key === ' ' || event.key === 'k')) return; // the native controls have it
    if (event.key === ',') step(-1);
    else if (event.key === '.') step(1);
    else if (event.key === ' ' || event.key === 'k') { if (video.paused) video.play().catch(() => {}); else video.pause(); }
    else if (event.key === '[' || event.key === ']') {
      const i = SPEEDS.indexOf(Number(speed.value)) + (event.key === ']' ? 1 : -1);
      if (i < 0 || i >= SPEEDS.length) return;
      speed.value = String(SPEEDS[i]);
      video.playbackRate = SPEEDS[i];
    } else if (event.key === 'f') {
      toggleFullscreen();
    } else if (event.key === 'i') {
      labels.checked = !labels.checked;
      poses.setOptions({ labels: labels.checked });
    } else return;
    event.preventDefault();
  };
  window.addEventListener('keydown', onKey);

  json.addEventListener('click', () => {
    saveBlob(new Blob([JSON.stringify(current)], { type: 'application/json' }),
      downloadName(asset.source_name, current.operator, 'json'));
  });
  for (const button of exports) {
    button.addEventListener('click', async () => {
      const format = button.dataset.format;
      const label = button.textContent;
      button.disabled = true;
      button.textContent = `${label}…`;
      try {
        const { blob, filename } = await api.exportFile(assetId, format);
        const extension = format === 'coco' ? 'json' : format;
        saveBlob(blob, filename || downloadName(asset.source_name, `${current.operator}-${format}`, extension));
      } catch (error) {
        onError(error);
      } finally {
        button.disabled = false;
        button.textContent = label;
      }
    });
  }

  let playing = null;
  mediaPromise.then((media) => {
    if (signal.aborted) return;
    playing = media;
    video.src = media.url;
  }, onError);
  video.addEventListener('error', async () => {
    // A presigned URL (AWS) expires: once it has, ask for a fresh one and carry on where playback was.
    if (playing?.expiresIn && Date.now() - playing.fetchedAt >= 1000 * playing.expiresIn && !signal.aborted) {
      const at = video.currentTime;
      try {
        playing = await api.mediaUrl(assetId);
        video.src = playing.url;
        video.currentTime = at;
        return;
      } catch { /* fall through to the note */ }
    }
    mediaNote.textContent = 'this browser cannot play the video (install ffmpeg so the server makes an H.264 proxy)';
  });

  return {
    update(doc) {
      current = doc;
      describe(doc);
      poses.setFrames(doc.frames);
      timeline.setFrames(doc.frames);
      angles.setFrames(doc.frames);
      people.setFrames(doc.frames);
    },
    loading(text) {
      status.textContent = text;
      status.hidden = !text;
    },
    complete(doc) {
      current = doc;
      json.disabled = false;
      container.dataset.complete = 'true';
    },
    destroy() {
      window.removeEventListener('keydown', onKey);
      window.document.removeEventListener('fullscreenchange', onFullscreen);
      if (window.document.fullscreenElement === stage) window.document.exitFullscreen().catch(() => {});
      poses.destroy();
      timeline.destroy();
      angles.destroy();
      video.removeAttribute('src');
      video.load();
    },
  };
}
