// Temporary AWS credentials from a Cognito Identity Pool, for signing API calls (sigv4.js).
// Signed-in users: the Cognito hosted UI (implicit grant) returns #id_token=..., kept in sessionStorage and
// passed as a login; without one the pool's unauthenticated role is used (if the pool allows it).

const TOKEN_KEY = 'mie-pose.id_token';

async function identityCall(region, target, payload) {
  const response = await fetch(`https://cognito-identity.${region}.amazonaws.com/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': `AWSCognitoIdentityService.${target}` },
    body: JSON.stringify(payload),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`Cognito ${target}: ${body.message || body.__type || response.status}`);
  return body;
}

// Take an id_token the hosted UI put in the URL fragment, then clean the URL.
export function captureIdToken() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = fragment.get('id_token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signInUrl(auth) {
  if (!auth.hostedUiDomain || !auth.userPoolClientId) return null;
  const redirect = auth.redirectUri || `${location.origin}${location.pathname}`;
  return `https://${auth.hostedUiDomain}/oauth2/authorize?response_type=token&scope=openid`
    + `&client_id=${encodeURIComponent(auth.userPoolClientId)}&redirect_uri=${encodeURIComponent(redirect)}`;
}

export class CognitoCredentials {
  constructor(auth) {
    this.auth = auth;
    this.cached = null;
  }

  async get() {
    if (this.cached && this.cached.expiration - Date.now() > 5 * 60 * 1000) return this.cached;
    const { region, identityPoolId, userPoolId } = this.auth;
    const token = captureIdToken();
    const logins = token && userPoolId ? { [`cognito-idp.${region}.amazonaws.com/${userPoolId}`]: token } : undefined;
    const { IdentityId } = await identityCall(region, 'GetId', { IdentityPoolId: identityPoolId, Logins: logins });
    const { Credentials } = await identityCall(region, 'GetCredentialsForIdentity', { IdentityId, Logins: logins });
    this.cached = {
      accessKeyId: Credentials.AccessKeyId,
      secretAccessKey: Credentials.SecretKey,
      sessionToken: Credentials.SessionToken,
      expiration: Credentials.Expiration * 1000,
    };
    return this.cached;
  }
}
