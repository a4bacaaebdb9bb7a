// The single-page app: asset list (search, paging, progress), upload (local mode), the Overview tab
// (facts, people statistics, thumbnail, analyse, delete) and the Pose tab.
// Routes live in the URL fragment: #/, #/asset/ID (Pose when results exist, else Overview),
// #/asset/ID/overview, #/asset/ID/pose.

import { ApiClient, loadConfig, loadRoutes } from './api.js';
import { captureIdToken, signInUrl } from './cognito.js';
import { el, formatTime } from './dom.js';
import { trackSummaries } from './people.js';
import { renderPoseTab } from './pose-view.js';

const ACTIVE = new Set(['Queued', 'Started', 'Waiting', 'Resumed']);
const PAGE_SIZE = 10;
const REFRESH_MS = 1500;
const state = {
  api: null, config: null, cleanup: () => {}, abort: null, listTimer: 0, statusTimer: 0,
  error: null, assets: [], search: '', page: 0, upload: null, rates: new Map(), documentCache: null,
};

// --- errors: each has a source, and only that source clears it ------------------------------------
function showError(error, source = 'route') {
  const bar = document.getElementById('error-bar');
  state.error = { source, message: String(error?.message || error) };
  bar.textContent = state.error.message;
  bar.hidden = false;
}

function clearError(source) {
  if (!state.error || state.error.source !== source) return;
  state.error = null;
  const bar = document.getElementById('error-bar');
  bar.textContent = '';
  bar.hidden = true;
}

function statusBadge(status) {
  return el('span', { class: `badge status-${(status || 'none').toLowerCase().replace(/\s+/g, '-')}` },
    status || 'not analysed');
}

// --- progress of a running execution: frames done / total and the time left --------------------------
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// Frames per second seen between the first and the latest observation of a running stage.
function timeLeft(execution) {
  const { progress } = execution;
  if (!progress || !progress.total) return null;
  const key = `${execution.execution_id}:${progress.stage}`;
  const now = Date.now() / 1000;
  const first = state.rates.get(key);
  if (!first) { state.rates.set(key, { t: now, done: progress.done }); return null; }
  if (progress.done <= first.done || now <= first.t) return null;
  const rate = (progress.done - first.done) / (now - first.t);
  return (progress.total - progress.done) / rate;
}

function progressText(execution) {
  if (!execution || !ACTIVE.has(execution.status)) return null;
  const { progress } = execution;
  if (!progress) {
    const running = Object.entries(execution.stages).find(([, stage]) => stage.status === 'Started');
    return running ? `${running[0].replace(/Stage$/, '')}…` : execution.status === 'Queued' ? 'queued' : null;
  }
  const stage = progress.stage.replace(/Stage$/, '');
  const frames = progress.total ? `${progress.done} / ${progress.total} frames` : `${progress.done} frames`;
  const left = timeLeft(execution);
  return `${stage}: ${frames}${left === null ? '' : ` · about ${formatDuration(left)} left`}`;
}

function progressBar(execution) {
  const { progress } = execution || {};
  const text = progressText(execution);
  if (!text) return null;
  return el('div', { class: 'progress-line' },
    progress?.total ? el('progress', { max: String(progress.total), value: String(progress.done),
      'aria-label': `${progress.stage} progress` }) : null,
    el('span', { class: 'progress-text' }, text));
}

// --- asset list -----------------------------------------------------------------------------------
function filteredAssets() {
  const query = state.search.trim().toLowerCase();
  return query ? state.assets.filter((asset) => asset.source_name.toLowerCase().includes(query)
    || asset.asset_id.toLowerCase().startsWith(query)) : state.assets;
}

function renderAssetList() {
  const list = document.getElementById('asset-list');
  const pager = document.getElementById('asset-pager');
  const assets = filteredAssets();
  const pages = Math.max(1, Math.ceil(assets.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const shown = assets.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  const names = new Map();
  state.assets.forEach((asset) => names.set(asset.source_name, (names.get(asset.source_name) || 0) + 1));
  const current = currentRoute().assetId;
  list.replaceChildren(...(shown.length ? shown.map((asset) => {
    const execution = asset.latest_execution;
    const duplicate = names.get(asset.source_name) > 1;
    return el('li', { class: asset.asset_id === current ? 'selected' : null, 'data-asset-id': asset.asset_id },
      el('a', { href: `#/asset/${asset.asset_id}`, title: `${asset.source_name} (asset ${asset.asset_id})` },
        asset.source_name, duplicate ? el('span', { class: 'asset-id' }, ` · ${asset.asset_id.slice(0, 6)}`) : null),
      statusBadge(execution?.status),
      progressBar(execution),
      el('small', { class: 'muted' }, formatTime(asset.created)));
  }) : [el('li', { class: 'muted' }, state.assets.length ? 'no asset matches the search' : 'no assets yet')]));
  pager.hidden = pages <= 1;
  const first = assets.length ? state.page * PAGE_SIZE + 1 : 0;
  pager.querySelector('.pager-text').textContent = `${first}–${state.page * PAGE_SIZE + shown.length} of ${assets.length}`;
  pager.querySelector('.pager-prev').disabled = state.page === 0;
  pager.querySelector('.pager-next').disabled = state.page >= pages - 1;
}

function updateUploadMessage() {
  const upload = state.upload;
  if (!upload?.analyze) return;
  const asset = state.assets.find((a) => a.asset_id === upload.assetId);
  const execution = asset?.latest_execution;
  if (!execution || ACTIVE.has(execution.status)) return;
  const message = document.getElementById('upload-message');
  if (execution.status === 'Error') {
    setUploadMessage(`${upload.name}: analysis failed${execution.message ? `: ${execution.message}` : ''}`, true);
  } else {
    message.textContent = `${upload.name}: analysis ${execution.status.toLowerCase()}`;
  }
  state.upload = null;
}

async function refreshAssets() {
  clearTimeout(state.listTimer);
  try {
    state.assets = await state.api.listAssets();
    renderAssetList();
    updateUploadMessage();
    clearError('list');
    if (state.assets.some((asset) => ACTIVE.has(asset.latest_execution?.status))) {
      state.listTimer = setTimeout(refreshAssets, REFRESH_MS);
    }
  } catch (error) {
    showError(error, 'list');
    state.listTimer = setTimeout(refreshAssets, 5 * REFRESH_MS);
  }
}

function setUpAssetList() {
  document.getElementById('refresh-assets').addEventListener('click', refreshAssets);
  document.getElementById('asset-search').addEventListener('input', (event) => {
    state.search = event.target.value;
    state.page = 0;
    renderAssetList();
  });
  const pager = document.getElementById('asset-pager');
  pager.querySelector('.pager-prev').addEventListener('click', () => { state.page -= 1; renderAssetList(); });
  pager.querySelector('.pager-next').addEventListener('click', () => { state.page += 1; renderAssetList(); });
}

// --- upload (local mode) --------------------------------------------------------------------------
function setUploadMessage(text, isError = false) {
  const message = document.getElementById('upload-message');
  message.textContent = text;
  message.classList.toggle('error', isError);
  message.setAttribute('role', isError ? 'alert' : 'status');
}

function backendSelect(id, chosen) {
  const backends = state.config.backends || ['topdown'];
  return el('select', { id }, backends.map((name) => el('option', { value: name, selected: name === chosen }, name)));
}

function setUpUpload() {
  if (!state.config.upload) return;
  document.getElementById('upload-panel').hidden = false;
  const form = document.getElementById('upload-form');
  const progress = document.getElementById('upload-progress');
  const submit = form.querySelector('button[type=submit]');
  document.getElementById('upload-backend-slot').replaceWith(backendSelect('upload-backend', state.config.backends?.[0]));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    const file = document.getElementById('upload-file').files[0];
    if (!file) return;
    const analyze = document.getElementById('upload-analyze').checked;
    const fps = Number(document.getElementById('upload-fps').value) || undefined;
    const backend = document.getElementById('upload-backend').value || undefined;
    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    state.upload = null;
    setUploadMessage(`uploading ${file.name}…`);
    try {
      const result = await state.api.upload(file, { analyze, fps, backend }, (fraction) => { progress.value = fraction; });
      state.upload = { assetId: result.AssetId, name: file.name, analyze };
      setUploadMessage(`${file.name}: uploaded${analyze ? ', analysis queued' : ''}`);
      form.reset();
      await refreshAssets();
      location.hash = `#/asset/${result.AssetId}/overview`;
    } catch (error) {
      setUploadMessage(`upload failed: ${error.message}`, true);
    } finally {
      progress.hidden = true;
      submit.disabled = false;
    }
  });
}

// --- asset view -----------------------------------------------------------------------------------
function currentRoute() {
  const match = location.hash.match(/^#\/asset\/([A-Za-z0-9_.-]+)(?:\/(pose|overview))?\/?$/);
  return match ? { assetId: match[1], tab: match[2] || null } : { assetId: null, tab: null };
}

function executionTable(executions) {
  if (!executions.length) return el('p', { class: 'muted' }, 'no workflow has run on this asset yet');
  return el('table', { class: 'executions' },
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'execution'), el('th', { scope: 'col' }, 'status'),
      el('th', { scope: 'col' }, 'stages'), el('th', { scope: 'col' }, 'updated'))),
    el('tbody', {}, [...executions].reverse().map((execution) => el('tr', { 'data-execution-id': execution.execution_id },
      el('td', {}, el('code', {}, execution.execution_id.slice(0, 12))),
      el('td', {}, statusBadge(execution.status), execution.message ? el('div', { class: 'error' }, execution.message) : null,
        progressBar(execution)),
      el('td', {}, Object.entries(execution.stages).map(([stage, record]) => el('div', {}, `${stage}: `, statusBadge(record.status)))),
      el('td', {}, formatTime(execution.updated))))));
}

function formatMs(ms) {
  const seconds = ms / 1000;
  return seconds >= 60 ? `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s` : `${seconds.toFixed(1)} s`;
}

// The last complete document, so Overview and Pose do not fetch every page twice; it is dropped when
// the asset's latest execution changes (a new analysis).
function documentVersion(asset) {
  const latest = asset.executions[asset.executions.length - 1];
  return latest ? `${latest.execution_id}:${latest.status}` : 'none';
}

async function loadDocument(asset, { signal, onPage = null } = {}) {
  const cache = state.documentCache;
  if (cache && cache.assetId === asset.asset_id && cache.version === documentVersion(asset)) {
    if (onPage) onPage(cache.document, 1, false);
    return cache.document;
  }
  const document = await state.api.getDocument(asset.asset_id, state.config.operator, { signal, onPage });
  if (!signal?.aborted && document) state.documentCache = { assetId: asset.asset_id, version: documentVersion(asset), document };
  return document;
}

// People statistics of a document: tracks, the most people in one sampled frame, the mean per frame.
export function peopleStats(document) {
  const frames = document.frames;
  const counts = frames.map((frame) => frame.persons.length);
  return {
    tracks: trackSummaries(frames).length,
    most: counts.length ? Math.max(...counts) : 0,
    mean: counts.length ? counts.reduce((a, b) => a + b, 0) / counts.length : 0,
    withPeople: counts.filter(Boolean).length,
    frames: frames.length,
  };
}

async function renderOverview(body, asset, signal) {
  const assetId = asset.asset_id;
  const operators = await state.api.listOperators(assetId, asset).catch(() => []);
  if (signal.aborted) return;
  const hasResults = operators.includes(state.config.operator);
  const facts = new Map([
    ['asset', el('code', {}, assetId)], ['file', asset.source_name], ['uploaded', formatTime(asset.created)],
    ['duration', '…'], ['resolution', '…'], ['frame rate', hasResults ? '…' : 'known after analysis'],
    ['results', operators.join(', ') || 'none yet']]);
  const factList = el('dl', { class: 'facts' });
  const renderFacts = () => factList.replaceChildren(...[...facts].flatMap(([name, value]) => [
    el('dt', {}, name), el('dd', { 'data-fact': name }, value)]));
  renderFacts();
  const thumb = el('video', { class: 'thumb', preload: 'metadata', muted: '', playsinline: '', 'aria-label': `thumbnail of ${asset.source_name}` });
  thumb.addEventListener('loadedmetadata', () => {
    if (facts.get('resolution') === '…') facts.set('resolution', `${thumb.videoWidth} × ${thumb.videoHeight}`);
    if (facts.get('duration') === '…' && Number.isFinite(thumb.duration)) facts.set('duration', formatMs(thumb.duration * 1000));
    renderFacts();
  });
  state.api.mediaUrl(assetId).then((media) => { if (!signal.aborted) thumb.src = `${media.url}#t=${asset.thumbTime ?? 1}`; })
    .catch(() => {});
  const stats = el('dl', { class: 'facts people-stats' });

  const executions = asset.executions;
  const fps = el('input', { type: 'number', id: 'analyse-fps', min: '0.1', max: '30', step: '0.1', value: String(state.config.fps || 2) });
  const backend = backendSelect('analyse-backend', state.config.backends?.[0]);
  const analyse = el('button', { type: 'button', id: 'analyse' }, executions.length ? 'Analyse again' : 'Analyse');
  analyse.disabled = executions.some((execution) => ACTIVE.has(execution.status));
  analyse.addEventListener('click', async () => {
    analyse.disabled = true;
    try {
      await state.api.startWorkflow(assetId, { FrameExtraction: { FPS: Number(fps.value) || 2 },
        PoseDetection: { Backend: backend.value } });
      await refreshAssets();
      if (!signal.aborted) route();
    } catch (error) {
      showError(error);
      analyse.disabled = false;
    }
  });
  const remove = el('button', { type: 'button', id: 'delete-asset', class: 'danger' }, 'Delete asset');
  remove.addEventListener('click', async () => {
    if (!window.confirm(`Delete ${asset.source_name} with its video and results?`)) return;
    remove.disabled = true;
    try {
      await state.api.deleteAsset(assetId);
      location.hash = '#/';
      await refreshAssets();
    } catch (error) {
      showError(error);
      remove.disabled = false;
    }
  });

  body.replaceChildren(
    el('div', { class: 'overview' },
      el('div', {}, factList, el('h3', {}, 'People'), stats),
      el('figure', { class: 'thumb-box' }, thumb)),
    el('h3', {}, 'Analysis'),
    el('div', { class: 'controls analyse' },
      el('label', { for: 'analyse-fps' }, 'frames per second'), fps,
      el('label', { for: 'analyse-backend' }, 'backend'), backend, analyse, remove),
    el('h3', {}, 'Workflow executions'),
    executionTable(executions));
  stats.replaceChildren(el('dt', {}, 'people'), el('dd', {}, hasResults ? '…' : 'not analysed yet'));

  if (hasResults) {
    const document = await loadDocument(asset, { signal }).catch(() => null);
    if (signal.aborted || !document) return;
    const video = document.video || {};
    facts.set('duration', formatMs(video.duration_ms || 0));
    facts.set('resolution', `${video.width} × ${video.height}`);
    facts.set('frame rate', `${Number(video.source_fps).toFixed(2)} fps (sampled at ${document.fps} fps, backend ${document.backend})`);
    renderFacts();
    const s = peopleStats(document);
    stats.replaceChildren(...[['tracked people', s.tracks], ['most in one frame', s.most],
      ['mean per sampled frame', s.mean.toFixed(2)], ['frames with people', `${s.withPeople} of ${s.frames}`]]
      .flatMap(([name, value]) => [el('dt', {}, name), el('dd', { 'data-stat': name }, String(value))]));
    const busiest = document.frames.reduce((best, frame) => (frame.persons.length > (best?.persons.length ?? -1) ? frame : best), null);
    if (busiest && thumb.src) thumb.src = thumb.src.replace(/#t=.*$/, `#t=${(busiest.timestamp_ms / 1000).toFixed(3)}`);
    else if (busiest) asset.thumbTime = (busiest.timestamp_ms / 1000).toFixed(3);
  }
}

// While an execution runs: update its progress (and the executions table) in place, without touching the
// player; once it has finished, render the asset again (results appear).
function scheduleRefresh(assetId, signal) {
  clearTimeout(state.statusTimer);
  state.statusTimer = setTimeout(async () => {
    if (signal.aborted) return;
    try {
      const asset = await state.api.getAsset(assetId);
      if (signal.aborted) return;
      clearError('status');
      const latest = asset.executions[asset.executions.length - 1];
      if (!asset.executions.some((execution) => ACTIVE.has(execution.status))) { route(); return; }
      document.querySelector('#main .running')?.replaceChildren('Analysis running: ', progressBar(latest) || '');
      document.querySelector('#main table.executions')?.replaceWith(executionTable(asset.executions));
    } catch (error) {
      if (!signal.aborted) showError(error, 'status');
    }
    scheduleRefresh(assetId, signal);
  }, REFRESH_MS);
}

async function renderAsset(assetId, tab, signal) {
  const main = document.getElementById('main');
  const asset = await state.api.getAsset(assetId);
  if (signal.aborted) return;
  let operators = null;
  if (!tab) {
    operators = await state.api.listOperators(assetId, asset).catch(() => []);
    tab = operators.includes(state.config.operator) ? 'pose' : 'overview';
    history.replaceState(null, '', `#/asset/${assetId}/${tab}`);
  }
  const body = el('section', { class: 'tab-body', id: `tab-${tab}`, role: 'tabpanel' });
  const tabLink = (name, label) => el('a', { href: `#/asset/${assetId}/${name}`, class: `tab${tab === name ? ' active' : ''}`,
    role: 'tab', 'aria-selected': String(tab === name), 'data-tab': name }, label);
  const running = asset.executions.some((execution) => ACTIVE.has(execution.status));
  const latest = asset.executions[asset.executions.length - 1];
  main.replaceChildren(
    el('h2', { class: 'asset-title' }, asset.source_name),
    el('nav', { class: 'tabs', role: 'tablist' }, tabLink('overview', 'Overview'), tabLink('pose', 'Pose')),
    ...(running ? [el('div', { class: 'running', role: 'status' }, 'Analysis running: ', progressBar(latest) || '')] : []),
    body);
  if (tab === 'pose') {
    try {
      state.cleanup = await renderPoseTab(body, state.api, asset, signal, {
        onError: (error) => showError(error), getDocument: (options) => loadDocument(asset, options) });
    } catch (error) {
      if (error.status !== 404) throw error;
      body.replaceChildren(el('p', { class: 'muted' }, running
        ? 'the workflow is still running; results appear here when it completes'
        : 'no pose results for this asset: run the workflow from the Overview tab'));
    }
  } else {
    await renderOverview(body, asset, signal);
  }
  if (running) scheduleRefresh(assetId, signal);
}

async function route() {
  state.cleanup();
  state.cleanup = () => {};
  state.abort?.abort();
  const controller = new AbortController();
  state.abort = controller;
  clearTimeout(state.statusTimer);
  clearError('status');
  const { assetId, tab } = currentRoute();
  document.querySelectorAll('#asset-list li').forEach((li) => li.classList.toggle('selected', li.dataset.assetId === assetId));
  const main = document.getElementById('main');
  if (!assetId) {
    clearError('route');
    main.replaceChildren(el('p', { class: 'muted' }, 'Choose an asset, or upload a video. Results come from ',
      el('code', {}, 'mie-pose analyze'), ' or the upload\'s workflow.'));
    return;
  }
  try {
    main.replaceChildren(el('p', { class: 'muted', role: 'status' }, 'loading…'));
    await renderAsset(assetId, tab, controller.signal);
    if (!controller.signal.aborted) clearError('route');
  } catch (error) {
    if (controller.signal.aborted) return;
    main.replaceChildren(el('p', { class: 'muted' }, `Cannot show asset ${assetId}.`));
    showError(error, 'route');
  }
}

function setUpAuth() {
  const auth = state.config.auth || {};
  const status = document.getElementById('auth-status');
  if (auth.mode !== 'sigv4') return;
  const signedIn = Boolean(captureIdToken());
  const url = signInUrl(auth);
  status.replaceChildren(signedIn ? 'signed in' : url ? el('a', { href: url }, 'Sign in') : 'guest');
}

async function start() {
  const [config, routes] = await Promise.all([loadConfig(), loadRoutes()]);
  state.config = config;
  state.api = new ApiClient(config, routes);
  setUpAuth();
  setUpUpload();
  setUpAssetList();
  window.addEventListener('hashchange', () => { route(); refreshAssets(); });
  await refreshAssets();
  await route();
}

start().catch((error) => showError(error, 'start'));
