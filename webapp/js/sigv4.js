// AWS Signature Version 4 for fetch() in the browser, with WebCrypto (no SDK). Used when config.json
// says auth.mode = "sigv4": API Gateway routes with AWS_IAM auth, credentials from a Cognito Identity Pool.

const encoder = new TextEncoder();

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

export async function sha256Hex(data) {
  const bytes = typeof data === 'string' ? encoder.encode(data) : data ?? new Uint8Array();
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

async function hmac(key, text) {
  const raw = typeof key === 'string' ? encoder.encode(key) : key;
  const cryptoKey = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, encoder.encode(text)));
}

// RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone).
export function uriEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function canonicalPath(pathname, service) {
  const segments = pathname.split('/').map((segment) => {
    const once = uriEncode(decodeURIComponent(segment));
    return service === 's3' ? once : uriEncode(once);
  });
  return segments.join('/') || '/';
}

function canonicalQuery(searchParams) {
  return [...searchParams.entries()]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

export function amzDate(date) {
  return date.toISOString().replace(/[:-]|\.\d{3}/g, '');
}

// Return the headers to add to a request: Authorization, X-Amz-Date, X-Amz-Security-Token when a session.
// `headers` are the request's own headers that must be signed (e.g. content-type); host comes from url.
export async function signRequest({ method, url, headers = {}, body = '', credentials, region, service,
  date = new Date() }) {
  const target = new URL(url);
  const stamp = amzDate(date);
  const day = stamp.slice(0, 8);
  const signed = { host: target.host, 'x-amz-date': stamp };
  if (credentials.sessionToken) signed['x-amz-security-token'] = credentials.sessionToken;
  for (const [name, value] of Object.entries(headers)) signed[name.toLowerCase()] = String(value);
  const names = Object.keys(signed).sort();
  const canonicalHeaders = names.map((n) => `${n}:${signed[n].trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = names.join(';');
  const payloadHash = await sha256Hex(body);
  const canonical = [method.toUpperCase(), canonicalPath(target.pathname, service),
    canonicalQuery(target.searchParams), canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', stamp, scope, await sha256Hex(canonical)].join('\n');
  let key = await hmac(`AWS4${credentials.secretAccessKey}`, day);
  for (const part of [region, service, 'aws4_request']) key = await hmac(key, part);
  const signature = hex(await hmac(key, stringToSign));
  const result = {
    Authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, `
      + `SignedHeaders=${signedHeaders}, Signature=${signature}`,
    'X-Amz-Date': stamp,
  };
  if (credentials.sessionToken) result['X-Amz-Security-Token'] = credentials.sessionToken;
  return result;
}
