// The people panel: one row per track (colour, id, first and last seen, sampled frames) with buttons to
// seek to the person, follow them (the joint-angle chart and step keys use that person), highlight them
// (the others dimmed) or hide them.

import { el } from './dom.js';
import { trackColour } from './overlay.js';

// [{track_id, first_ms, last_ms, frames}] for every track in the frames, by first appearance.
export function trackSummaries(frames) {
  const tracks = new Map();
  for (const frame of frames) {
    for (const person of frame.persons) {
      if (person.track_id == null) continue;
      const track = tracks.get(person.track_id);
      if (track) {
        track.first_ms = Math.min(track.first_ms, frame.timestamp_ms);
        track.last_ms = Math.max(track.last_ms, frame.timestamp_ms);
        track.frames += 1;
      } else {
        tracks.set(person.track_id, { track_id: person.track_id, first_ms: frame.timestamp_ms,
          last_ms: frame.timestamp_ms, frames: 1 });
      }
    }
  }
  return [...tracks.values()].sort((a, b) => a.first_ms - b.first_ms || a.track_id - b.track_id);
}

export function formatClock(ms) {
  const total = Math.max(0, ms) / 1000;
  const minutes = Math.floor(total / 60);
  const seconds = total - minutes * 60;
  return `${minutes}:${seconds.toFixed(1).padStart(4, '0')}`;
}

export class PeoplePanel {
  // handlers: seek(ms), follow(trackId|null), highlight(trackId|null), hidden(Set)
  constructor(container, handlers) {
    this.container = container;
    this.handlers = handlers;
    this.followed = null;
    this.highlighted = null;
    this.hidden = new Set();
    this.summaries = [];
  }

  setFrames(frames) {
    this.summaries = trackSummaries(frames);
    this.render();
  }

  toggle(kind, trackId) {
    if (kind === 'follow') {
      this.followed = this.followed === trackId ? null : trackId;
      this.handlers.follow(this.followed);
    } else if (kind === 'highlight') {
      this.highlighted = this.highlighted === trackId ? null : trackId;
      this.handlers.highlight(this.highlighted);
    } else if (kind === 'hide') {
      if (this.hidden.has(trackId)) this.hidden.delete(trackId); else this.hidden.add(trackId);
      this.handlers.hidden(new Set(this.hidden));
    }
    this.render();
  }

  render() {
    if (!this.summaries.length) {
      this.container.replaceChildren(el('p', { class: 'muted' }, 'no tracked people in these results'));
      return;
    }
    const toggleButton = (kind, label, track, pressed) => {
      const button = el('button', { type: 'button', class: `small ${kind}`, 'aria-pressed': String(pressed),
        'aria-label': `${label} person ${track.track_id}` }, label);
      button.addEventListener('click', () => this.toggle(kind, track.track_id));
      return button;
    };
    const rows = this.summaries.map((track) => {
      const seek = el('button', { type: 'button', class: 'small seek', 'aria-label': `seek to person ${track.track_id}` },
        'Seek');
      seek.addEventListener('click', () => this.handlers.seek(track.first_ms));
      const classes = [this.followed === track.track_id ? 'followed' : '', this.hidden.has(track.track_id) ? 'hidden-track' : '']
        .filter(Boolean).join(' ');
      return el('tr', { 'data-track-id': track.track_id, class: classes || null },
        el('td', {}, el('span', { class: 'swatch', style: { background: trackColour(track) } })),
        el('th', { scope: 'row' }, `#${track.track_id}`),
        el('td', { class: 'num' }, formatClock(track.first_ms)),
        el('td', { class: 'num' }, formatClock(track.last_ms)),
        el('td', { class: 'num' }, String(track.frames)),
        el('td', { class: 'actions' }, seek,
          toggleButton('follow', 'Follow', track, this.followed === track.track_id),
          toggleButton('highlight', 'Highlight', track, this.highlighted === track.track_id),
          toggleButton('hide', 'Hide', track, this.hidden.has(track.track_id))));
    });
    this.container.replaceChildren(el('table', { class: 'people' },
      el('caption', {}, `${this.summaries.length} people (tracks)`),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'colour')),
        el('th', { scope: 'col' }, 'id'), el('th', { scope: 'col' }, 'first'), el('th', { scope: 'col' }, 'last'),
        el('th', { scope: 'col' }, 'frames'), el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'actions')))),
      el('tbody', {}, rows)));
  }
}
