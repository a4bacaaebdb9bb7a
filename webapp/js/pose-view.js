// The Pose tab: the asset's video with every person's skeleton over it, a confidence slider, the
// timeline of where people appear, and a JSON download of the result document.

import { PoseOverlay } from './overlay.js';
import { Timeline } from './timeline.js';
import { el } from './dom.js';

export async function renderPoseTab(container, api, assetId, signal) {
  container.replaceChildren(el('p', { class: 'muted' }, 'loading results…'));
  const [document, media] = await Promise.all([api.getDocument(assetId), api.mediaUrl(assetId)]);
  if (signal.aborted) return () => {};
  const video = el('video', { class: 'pose-video', controls: '', preload: 'auto', muted: '', playsinline: '',
    src: media.url });
  const overlay = el('canvas', { class: 'pose-overlay', 'aria-hidden': 'true' });
  const timelineCanvas = el('canvas', { class: 'pose-timeline', title: 'sampled frames with people; click to seek' });
  const slider = el('input', { type: 'range', min: '0', max: '1', step: '0.05', value: '0.3', id: 'threshold' });
  const sliderValue = el('output', { for: 'threshold' }, '0.30');
  const mediaNote = el('span', { class: 'muted media-note' });
  const download = el('button', { type: 'button', class: 'download' }, 'Download JSON');
  const frames = document.frames;
  const withPeople = frames.filter((frame) => frame.persons.length).length;
  const summary = el('p', { class: 'summary' },
    `${frames.length} sampled frames at ${document.fps} fps, ${withPeople} with people · backend ${document.backend} · `
    + `${document.video.width}×${document.video.height}`);

  container.replaceChildren(
    summary,
    el('div', { class: 'stage' }, video, overlay),
    timelineCanvas,
    el('div', { class: 'controls' },
      el('label', { for: 'threshold' }, 'keypoint confidence ≥ '), slider, sliderValue, download, mediaNote),
  );

  const poses = new PoseOverlay(video, overlay, document);
  const timeline = new Timeline(timelineCanvas, video, document);
  slider.addEventListener('input', () => {
    const value = Number(slider.value);
    sliderValue.textContent = value.toFixed(2);
    poses.setThreshold(value);
  });
  poses.setThreshold(Number(slider.value));
  download.addEventListener('click', () => {
    const blob = new Blob([JSON.stringify(document, null, 1)], { type: 'application/json' });
    const link = el('a', { href: URL.createObjectURL(blob), download: `${assetId}-${document.operator}.json` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
  let playing = media;
  video.addEventListener('error', async () => {
    // A presigned URL (AWS) expires: once it has, ask for a fresh one and carry on where playback was.
    if (playing.expiresIn && Date.now() - playing.fetchedAt >= 1000 * playing.expiresIn && !signal.aborted) {
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
  return () => {
    poses.destroy();
    timeline.destroy();
    video.removeAttribute('src');
    video.load();
  };
}
