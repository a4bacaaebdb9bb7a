// The API client: every result the app shows comes through these routes (api/routes.py), locally from
// `mie-pose serve` and on AWS from API Gateway, whose base URL and auth mode come from config.json.

import { CognitoCredentials } from './cognito.js';
import { signRequest } from './sigv4.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function loadConfig(url = 'config.json') {
  const defaults = { apiBaseUrl: '', mediaUrlTemplate: '{apiBaseUrl}/media/{asset_id}', upload: true,
    operator: 'PoseDetection', auth: { mode: 'none' } };
  try {
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) return defaults;
    return { ...defaults, ...(await response.json()) };
  } catch {
    return defaults;
  }
}

export class ApiClient {
  constructor(config) {
    this.config = config;
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

  listAssets() { return this.request('GET', '/asset'); }

  getAsset(assetId) { return this.request('GET', `/asset/${encodeURIComponent(assetId)}`); }

  listOperators(assetId) { return this.request('GET', `/metadata/${encodeURIComponent(assetId)}`); }

  startWorkflow(assetId, configuration = {}) {
    return this.request('POST', '/workflow/execution',
      { Name: 'PoseWorkflow', Input: { AssetId: assetId }, Configuration: configuration });
  }

  // The whole result document: the first page's header plus the frames of every page, following `cursor`.
  async getDocument(assetId, operator = this.config.operator) {
    let cursor = null;
    let document = null;
    do {
      const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : '';
      const page = await this.request('GET', `/metadata/${encodeURIComponent(assetId)}/${encodeURIComponent(operator)}${query}`);
      if (document) document.frames.push(...page.results.frames);
      else document = { ...page.results, frames: [...page.results.frames] };
      cursor = page.cursor;
    } while (cursor);
    return document;
  }

  mediaUrl(assetId) {
    return (this.config.mediaUrlTemplate || '{apiBaseUrl}/media/{asset_id}')
      .replace('{apiBaseUrl}', this.base).replace('{asset_id}', encodeURIComponent(assetId));
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
