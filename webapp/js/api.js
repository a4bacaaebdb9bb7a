// The API client: every result the app shows comes through the routes of api/routes.py, locally from
// `mie-pose serve` and on AWS from API Gateway, whose base URL and auth mode come from config.json.
// Paths are built from routes.json (that table as JSON: `mie-pose routes --json`), keyed by handler name.

import { CognitoCredentials } from './cognito.js';
import { signRequest } from './sigv4.js';

export class ApiError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The message of an error body: MIE's {"Code", "Message"}, or the older {"error"}.
export function errorMessage(data, fallback) {
  return (data && (data.Message || data.error || data.message)) || fallback;
}

// Seconds since the epoch from a number, a numeric string (MIE's "Created") or an ISO date; null if none.
export function epochSeconds(value) {
  if (value === null || value === undefined || value === '') return null;
  const number = Number(value);
  if (Number.isFinite(number)) return number > 1e11 ? number / 1000 : number;
  const parsed = Date.parse(value);
  return Number.isFinite(parsed) ? parsed / 1000 : null;
}

// One workflow execution in the shape the app reads, from MIE's record ({Id, Status, Workflow.Stages}) or the
// older one ({execution_id, status, stages}): {execution_id, status, stages: {name: {status, progress}},
// progress (the running stage's {done, total, stage}), message, created, updated}.
export function normalizeExecution(record) {
  if (!record) return null;
  const rawStages = record.Workflow?.Stages || record.stages || {};
  const stages = {};
  let progress = null;
  for (const [name, stage] of Object.entries(rawStages)) {
    const status = stage.Status || stage.status || 'Not Started';
    const p = stage.Progress || stage.progress;
    const stageProgress = p ? { done: Number(p.FramesDone ?? p.done ?? 0),
      total: p.FramesTotal ?? p.total ?? null, stage: name } : null;
    stages[name] = { status, progress: stageProgress };
    if (stageProgress && status === 'Started') progress = stageProgress;
  }
  return {
    execution_id: record.Id || record.execution_id || record.WorkflowExecutionId || '',
    status: record.Status || record.status || null,
    stages,
    progress,
    current_stage: record.CurrentStage || null,
    message: record.Message || record.message || null,
    created: epochSeconds(record.Created ?? record.created),
    updated: epochSeconds(record.Updated ?? record.updated ?? record.Created ?? record.created),
  };
}

// One asset in the shape the app reads: {asset_id, source_name, created, latest_execution, executions,
// operators}. MIE names (AssetId, Created, S3Key) are read too.
export function normalizeAsset(record) {
  const key = record.S3Key || record.media?.Video?.S3Key || '';
  const executions = (record.executions || record.Executions || []).map(normalizeExecution)
    .sort((a, b) => (a.created ?? 0) - (b.created ?? 0));
  return {
    ...record,
    asset_id: record.asset_id || record.AssetId,
    source_name: record.source_name || record.Name || key.split('/').pop() || record.asset_id || record.AssetId,
    created: epochSeconds(record.created ?? record.Created),
    latest_execution: normalizeExecution(record.latest_execution || record.LatestExecution)
      || executions[executions.length - 1] || null,
    executions,
    operators: record.operators || null,
  };
}

export async function loadConfig(url = 'config.json') {
  const defaults = { apiBaseUrl: '', upload: true, operator: 'PoseDetection', auth: { mode: 'none' },
    backends: ['topdown', 'topdown-movenet', 'blazepose'], fps: 2 };
  try {
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) return defaults;
    return { ...defaults, ...(await response.json()) };
  } catch {
    return defaults;
  }
}

// The route table, served by `mie-pose serve` and copied beside index.html on AWS.
export async function loadRoutes(url = 'routes.json') {
  const response = await fetch(url, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`cannot load the API routes (${url}: ${response.status})`);
  return response.json();
}

export class ApiClient {
  constructor(config, routes) {
    this.config = config;
    this.routes = new Map(routes.map((route) => [route.handler, route]));
    this.base = (config.apiBaseUrl || '').replace(/\/$/, '');
    const auth = config.auth || { mode: 'none' };
    this.auth = auth;
    this.credentials = auth.mode === 'sigv4' ? (auth.credentials ? { get: async () => auth.credentials }
      : new CognitoCredentials(auth)) : null;
  }

  url(path) {
    return new URL(`${this.base}${path}`, location.href).href;
  }

  async request(method, path, body) {
    const url = this.url(path);
    const headers = {};
    let payload;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    if (this.credentials) {
      Object.assign(headers, await signRequest({
        method, url, headers: { ...headers }, body: payload ?? '', credentials: await this.credentials.get(),
        region: this.auth.region, service: this.auth.service || 'execute-api',
      }));
    }
    const response = await fetch(url, { method, headers, body: payload });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new ApiError(response.status, errorMessage(data, `${method} ${path}: ${response.status}`), data.Code || null);
    }
    return data;
  }

  // A signed (where needed) GET of a non-JSON body: {blob, filename (from Content-Disposition, or null)}.
  async fetchFile(path) {
    const url = this.url(path);
    const headers = this.credentials ? await signRequest({
      method: 'GET', url, headers: {}, body: '', credentials: await this.credentials.get(),
      region: this.auth.region, service: this.auth.service || 'execute-api',
    }) : {};
    const response = await fetch(url, { headers });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new ApiError(response.status, errorMessage(data, `GET ${path}: ${response.status}`), data.Code || null);
    }
    const disposition = response.headers.get('Content-Disposition') || '';
    const match = disposition.match(/filename\*=UTF-8''([^;]+)|filename="?([^";]+)"?/i);
    const filename = match ? decodeURIComponent(match[1] || match[2]) : null;
    return { blob: await response.blob(), filename };
  }

  // The route whose method and path template are these, whatever its handler is called.
  routeByPath(method, template) {
    for (const route of this.routes.values()) if (route.method === method && route.path === template) return route;
    return null;
  }

  has(name) { return this.routes.has(name); }

  // The path of the route whose handler is `name`, its {parameters} filled from `params`.
  path(name, params = {}) {
    const route = this.routes.get(name);
    if (!route) throw new Error(`routes.json has no route ${name}`);
    return route.path.replace(/\{(\w+)\}/g, (_, key) => {
      if (params[key] === undefined) throw new Error(`route ${name} needs ${key}`);
      return encodeURIComponent(params[key]);
    });
  }

  call(name, params = {}, { body, query } = {}) {
    const search = query && Object.keys(query).length ? `?${new URLSearchParams(query)}` : '';
    return this.request(this.routes.get(name)?.method || 'GET', this.path(name, params) + search, body);
  }

  // Every asset (following `cursor` when the API pages the list), newest first, in normalizeAsset's shape.
  async listAssets() {
    const assets = [];
    let cursor = null;
    do {
      const data = await this.call('list_assets', {}, { query: cursor ? { cursor } : undefined });
      const items = Array.isArray(data) ? data : data.assets || data.Items || [];
      assets.push(...items.map(normalizeAsset));
      cursor = Array.isArray(data) ? null : data.cursor || null;
    } while (cursor);
    return assets.sort((a, b) => (b.created ?? 0) - (a.created ?? 0));
  }

  async getAsset(assetId) {
    const asset = normalizeAsset(await this.call('get_asset', { asset_id: assetId }));
    if (!asset.executions.length && this.has('list_executions')) {
      const data = await this.call('list_executions', { asset_id: assetId }).catch(() => []);
      const items = Array.isArray(data) ? data : data.executions || data.Items || [];
      asset.executions = items.map(normalizeExecution).sort((a, b) => (a.created ?? 0) - (b.created ?? 0));
      asset.latest_execution = asset.executions[asset.executions.length - 1] || asset.latest_execution;
    }
    return asset;
  }

  // Names of the operators with results for the asset (from the asset record when it lists them).
  async listOperators(assetId, asset = null) {
    if (asset?.operators) return asset.operators;
    // GET /asset/{asset_id} lists them ("operators"); MIE's GET /metadata/{asset_id} walks their pages instead.
    const data = await this.call('get_asset', { asset_id: assetId });
    return Array.isArray(data.operators) ? data.operators : [];
  }

  // DELETE /metadata/{asset_id} (MIE): the asset, its media and its results.
  deleteAsset(assetId) {
    const route = this.routes.get('delete_asset') || this.routeByPath('DELETE', '/metadata/{asset_id}');
    const template = route?.path || '/metadata/{asset_id}';
    return this.request('DELETE', template.replace('{asset_id}', encodeURIComponent(assetId)));
  }

  // Whether the API can export: GET /export/{asset_id}/{operator}?format=coco|csv|mp4.
  canExport() {
    return Boolean(this.routes.get('export_metadata') || this.routes.get('get_export')
      || this.routeByPath('GET', '/export/{asset_id}/{operator}'));
  }

  exportFile(assetId, format, operator = this.config.operator) {
    const route = this.routes.get('export_metadata') || this.routes.get('get_export')
      || this.routeByPath('GET', '/export/{asset_id}/{operator}');
    const template = route?.path || '/export/{asset_id}/{operator}';
    const path = template.replace('{asset_id}', encodeURIComponent(assetId)).replace('{operator}', encodeURIComponent(operator));
    return this.fetchFile(`${path}?${new URLSearchParams({ format })}`);
  }

  // configuration: {operator: {setting: value}}; MIE's nests it by stage, so both are accepted by the API.
  startWorkflow(assetId, configuration = {}) {
    return this.call('start_execution', {},
      { body: { Name: 'PoseWorkflow', Input: { AssetId: assetId }, Configuration: configuration } });
  }

  // The whole result document: the first page's header plus the frames of every page, following `cursor`
  // (absent or null on the last page). onPage(document, pages) runs after each page, so callers can draw
  // what has arrived; stop with `signal`.
  async getDocument(assetId, operator = this.config.operator, { onPage = null, signal = null } = {}) {
    let cursor = null;
    let document = null;
    let pages = 0;
    do {
      const page = await this.call('get_metadata', { asset_id: assetId, operator },
        { query: cursor ? { cursor } : undefined });
      if (signal?.aborted) return document;
      const results = Array.isArray(page.results) ? { frames: page.results } : page.results || {};
      const frames = results.frames || [];
      if (document) document.frames.push(...frames);
      else document = { ...results, frames: [...frames] };
      pages += 1;
      cursor = page.cursor || null;
      if (onPage) onPage(document, pages, Boolean(cursor));
    } while (cursor);
    return document;
  }

  // Where a <video> element can load the asset without signing: {url, expires_in (s, or null)}. Locally the
  // server's /media route (relative to the API); on AWS a short-lived presigned S3 URL.
  async mediaUrl(assetId) {
    const media = await this.call('get_media_url', { asset_id: assetId });
    const url = /^[a-z][a-z0-9+.-]*:/i.test(media.url) ? media.url : this.url(media.url);
    return { url, expiresIn: media.expires_in, fetchedAt: Date.now() };
  }

  // Local mode only: POST /upload with the file as the body; onProgress(fraction).
  upload(file, { analyze = true, fps, backend } = {}, onProgress = () => {}) {
    const query = new URLSearchParams({ name: file.name });
    if (analyze) query.set('analyze', '1');
    if (analyze && fps) query.set('fps', String(fps));
    if (analyze && backend) query.set('backend', backend);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', this.url(`/upload?${query}`));
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
      xhr.onload = () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new ApiError(xhr.status, errorMessage(data, `upload failed: ${xhr.status}`), data.Code || null));
      };
      xhr.onerror = () => reject(new ApiError(0, 'upload failed: network error'));
      xhr.send(file);
    });
  }
}
