// The single-page app: asset list, upload (local mode), workflow status and the Pose tab.
// Routes live in the URL fragment: #/, #/asset/ID (overview), #/asset/ID/pose.

import { ApiClient, loadConfig, loadRoutes } from './api.js';
import { captureIdToken, signInUrl } from './cognito.js';
import { el, formatTime } from './dom.js';
import { renderPoseTab } from './pose-view.js';

const ACTIVE = new Set(['Queued', 'Started', 'Waiting']);
const state = { api: null, config: null, cleanup: () => {}, abort: null, listTimer: 0, statusTimer: 0 };

function showError(error) {
  const bar = document.getElementById('error-bar');
  bar.textContent = error ? String(error.message || error) : '';
  bar.hidden = !error;
}

function statusBadge(status) {
  return el('span', { class: `badge status-${(status || 'none').toLowerCase()}` }, status || 'not analysed');
}

// --- asset list -----------------------------------------------------------------------------------
async function refreshAssets() {
  clearTimeout(state.listTimer);
  const list = document.getElementById('asset-list');
  try {
    const { assets } = await state.api.listAssets();
    const current = currentRoute().assetId;
    list.replaceChildren(...(assets.length ? [...assets].reverse().map((asset) => {
      const status = asset.latest_execution?.status;
      return el('li', { class: asset.asset_id === current ? 'selected' : '', 'data-asset-id': asset.asset_id },
        el('a', { href: `#/asset/${asset.asset_id}` }, asset.source_name),
        statusBadge(status),
        el('small', { class: 'muted' }, formatTime(asset.created)));
    }) : [el('li', { class: 'muted' }, 'no assets yet')]));
    showError(null);
    if (assets.some((asset) => ACTIVE.has(asset.latest_execution?.status))) {
      state.listTimer = setTimeout(refreshAssets, 1500);
    }
  } catch (error) {
    showError(error);
  }
}

// --- upload (local mode) --------------------------------------------------------------------------
function setUpUpload() {
  if (!state.config.upload) return;
  document.getElementById('upload-panel').hidden = false;
  const form = document.getElementById('upload-form');
  const progress = document.getElementById('upload-progress');
  const message = document.getElementById('upload-message');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const file = document.getElementById('upload-file').files[0];
    if (!file) return;
    const analyze = document.getElementById('upload-analyze').checked;
    const fps = Number(document.getElementById('upload-fps').value) || undefined;
    progress.hidden = false;
    progress.value = 0;
    message.textContent = `uploading ${file.name}…`;
    try {
      const result = await state.api.upload(file, { analyze, fps }, (fraction) => { progress.value = fraction; });
      message.textContent = `${file.name}: asset ${result.AssetId}${analyze ? ', analysis queued' : ''}`;
      form.reset();
      await refreshAssets();
      location.hash = `#/asset/${result.AssetId}`;
    } catch (error) {
      message.textContent = `upload failed: ${error.message}`;
    } finally {
      progress.hidden = true;
    }
  });
}

// --- asset view -----------------------------------------------------------------------------------
function currentRoute() {
  const match = location.hash.match(/^#\/asset\/([A-Za-z0-9_-]+)(?:\/(pose))?/);
  return match ? { assetId: match[1], tab: match[2] || 'overview' } : { assetId: null, tab: null };
}

function executionTable(executions) {
  if (!executions.length) return el('p', { class: 'muted' }, 'no workflow has run on this asset yet');
  return el('table', { class: 'executions' },
    el('thead', {}, el('tr', {}, el('th', {}, 'execution'), el('th', {}, 'status'), el('th', {}, 'stages'),
      el('th', {}, 'updated'))),
    el('tbody', {}, [...executions].reverse().map((execution) => el('tr', { 'data-execution-id': execution.execution_id },
      el('td', {}, el('code', {}, execution.execution_id.slice(0, 12))),
      el('td', {}, statusBadge(execution.status), execution.message ? el('div', { class: 'error' }, execution.message) : null),
      el('td', {}, Object.entries(execution.stages).map(([stage, record]) => el('div', {}, `${stage}: `, statusBadge(record.Status)))),
      el('td', {}, formatTime(execution.updated))))));
}

async function renderOverview(body, assetId, signal) {
  clearTimeout(state.statusTimer);
  const [asset, operators] = await Promise.all([state.api.getAsset(assetId),
    state.api.listOperators(assetId).catch(() => ({ operators: [] }))]);
  if (signal.aborted) return;
  const again = el('button', { type: 'button' }, 'Analyse again');
  again.addEventListener('click', async () => {
    again.disabled = true;
    try {
      await state.api.startWorkflow(assetId);
      await refreshAssets();
      await renderOverview(body, assetId, signal);
    } catch (error) {
      showError(error);
    } finally {
      again.disabled = false;
    }
  });
  body.replaceChildren(
    el('dl', { class: 'facts' },
      el('dt', {}, 'asset'), el('dd', {}, el('code', {}, asset.asset_id)),
      el('dt', {}, 'uploaded'), el('dd', {}, formatTime(asset.created)),
      el('dt', {}, 'results'), el('dd', {}, operators.operators.join(', ') || 'none yet')),
    el('h3', {}, 'Workflow executions'),
    executionTable(asset.executions),
    el('div', { class: 'controls' }, again));
  if (asset.executions.some((execution) => ACTIVE.has(execution.status))) {
    state.statusTimer = setTimeout(() => {
      if (!signal.aborted) renderOverview(body, assetId, signal).catch(showError);
    }, 1500);
  }
}

async function renderAsset(assetId, tab) {
  const main = document.getElementById('main');
  const asset = await state.api.getAsset(assetId);
  const body = el('section', { class: 'tab-body', id: `tab-${tab}` });
  const tabLink = (name, label, href) => el('a', { href, class: `tab${tab === name ? ' active' : ''}`,
    role: 'tab', 'aria-selected': String(tab === name), 'data-tab': name }, label);
  main.replaceChildren(
    el('h2', { class: 'asset-title' }, asset.source_name),
    el('nav', { class: 'tabs', role: 'tablist' },
      tabLink('overview', 'Overview', `#/asset/${assetId}`), tabLink('pose', 'Pose', `#/asset/${assetId}/pose`)),
    body);
  const signal = state.abort.signal;
  if (tab === 'pose') {
    try {
      state.cleanup = await renderPoseTab(body, state.api, assetId, signal);
    } catch (error) {
      if (error.status !== 404) throw error;
      const running = asset.executions.some((execution) => ACTIVE.has(execution.status));
      body.replaceChildren(el('p', { class: 'muted' }, running
        ? 'the workflow is still running; results appear here when it completes'
        : 'no pose results for this asset: run the workflow from the Overview tab'));
      if (running) state.statusTimer = setTimeout(() => { if (!signal.aborted) route(); }, 1500);
    }
  } else {
    await renderOverview(body, assetId, signal);
  }
}

async function route() {
  state.cleanup();
  state.cleanup = () => {};
  state.abort?.abort();
  state.abort = new AbortController();
  clearTimeout(state.statusTimer);
  const { assetId, tab } = currentRoute();
  document.querySelectorAll('#asset-list li').forEach((li) => li.classList.toggle('selected', li.dataset.assetId === assetId));
  if (!assetId) return;
  try {
    await renderAsset(assetId, tab);
    showError(null);
  } catch (error) {
    showError(error);
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
  document.getElementById('refresh-assets').addEventListener('click', refreshAssets);
  window.addEventListener('hashchange', () => { route(); refreshAssets(); });
  await refreshAssets();
  await route();
}

start().catch(showError);
