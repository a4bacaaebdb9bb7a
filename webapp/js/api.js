// The API client: every result the app shows comes through the routes of api/routes.py, locally from
// `mie-pose serve` and on AWS from API Gateway, whose base URL and auth mode come from config.json.
// Paths are built from routes.json (that table as JSON: `mie-pose routes --json`), keyed by handler name.

import { CognitoCredentials } from './cognito.js';
import { signRequest } from './sigv4.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function loadConfig(url = 'config.json') {
  const defaults = { apiBaseUrl: '', upload: true, operator: 'PoseDetection', auth: { mode: 'none' } };
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
    if (!response.ok) throw new ApiError(response.status, data.error || data.message || `${method} ${path}: ${response.status}`);
    return data;
  }

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

  listAssets() { return this.call('list_assets'); }

  getAsset(assetId) { return this.call('get_asset', { asset_id: assetId }); }

  listOperators(assetId) { return this.call('list_operators', { asset_id: assetId }); }

  startWorkflow(assetId, configuration = {}) {
    return this.call('start_execution', {},
      { body: { Name: 'PoseWorkflow', Input: { AssetId: assetId }, Configuration: configuration } });
  }

  // The whole result document: the first page's header plus the frames of every page, following `cursor`.
  async getDocument(assetId, operator = this.config.operator) {
    let cursor = null;
    let document = null;
    do {
      const page = await this.call('get_metadata', { asset_id: assetId, operator },
        { query: cursor ? { cursor } : undefined });
      if (document) document.frames.push(...page.results.frames);
      else document = { ...page.results, frames: [...page.results.frames] };
      cursor = page.cursor;
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
  upload(file, { analyze = true, fps } = {}, onProgress = () => {}) {
    const query = new URLSearchParams({ name: file.name });
    if (analyze) query.set('analyze', '1');
    if (analyze && fps) query.set('fps', String(fps));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', this.url(`/upload?${query}`));
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
      xhr.onload = () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new ApiError(xhr.status, data.error || `upload failed: ${xhr.status}`));
      };
      xhr.onerror = () => reject(new ApiError(0, 'upload failed: network error'));
      xhr.send(file);
    });
  }
}
