// The sign-in: a token from the auth service, kept in sessionStorage for this tab only.

const KEY = 'ates.token';

/** Takes a token handed over in the URL fragment (`/#token=…`), as the identity provider
 * redirects back, and removes it from the address bar and the history; true when there was
 * one. */
export function takeFromFragment() {
  const match = /^#token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  signIn(decodeURIComponent(match[1]));
  history.replaceState(null, '', `${location.pathname}#/`);
  return true;
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(token) {
  sessionStorage.setItem(KEY, token.trim());
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** When the token expires, read from its `exp` claim; null when it cannot be read. The
 * gateway checks the token: this only lets the app say so before a request fails. */
export function expiresAt() {
  const payload = token()?.split('.')[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? new Date(exp * 1000) : null;
  } catch {
    return null;
  }
}
