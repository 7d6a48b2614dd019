// The REST API and the event stream, as the dashboard sees them: bearer
// token handling, JSON requests with the API's error shape, page
// normalisation and the EventSource. Paths are relative to the page, so the
// dashboard also works when mounted below a prefix behind a proxy.

const TOKEN_KEY = 'sluice.token';

/**
 * Takes a token handed over in the URL (`#token=…`, or `&token=…` after a
 * route) into sessionStorage and removes it from the address bar, so it does
 * not linger in history or get copied along with a link.
 */
export function takeTokenFromHash() {
  const m = /(^#|[?&])token=([^&]*)/.exec(location.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[2]));
  let rest = location.hash.replace(/([?&])token=[^&]*&?/, '$1').replace(/[?&]$/, '');
  if (rest === '#' || rest === '') rest = '#/';
  history.replaceState(null, '', location.pathname + location.search + rest);
}

/** The stored token, if any. */
export const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

/** Stores (or, when empty, forgets) the token for this tab. */
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A failed request: HTTP status (0 when the server was unreachable) and the API's error body. */
export class ApiError extends Error {
  constructor(status, code, message, field, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

/** One JSON request; resolves to the parsed body (null when empty), rejects with `ApiError`. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `${method} ${path}: cannot reach the server (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    // `problems` lists every problem of a refused submission: {index, field, message}.
    const details = e.problems || e.details || [];
    throw new ApiError(res.status, e.code || `http_${res.status}`,
      e.message || `${method} ${path}: HTTP ${res.status}`, e.field, Array.isArray(details) ? details : []);
  }
  return data;
}

/**
 * A page of a list endpoint as `{ items, next }`, whatever the envelope:
 * a bare array, or an object with the list under `key`, `items` or `data`
 * and the cursor under `next_cursor`, `next` or `cursor`.
 */
export function page(data, key) {
  if (Array.isArray(data)) return { items: data, next: null };
  if (!data || typeof data !== 'object') return { items: [], next: null };
  const items = data[key] ?? data.items ?? data.data ?? [];
  return { items: Array.isArray(items) ? items : [], next: data.next_cursor ?? data.next ?? data.cursor ?? null };
}

/** A query string from an object, skipping empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

/**
 * Opens the event stream (`batch` or `job` narrows it; `after` starts after
 * a cursor). EventSource cannot send headers, so the token goes in
 * `access_token`. The browser reconnects by itself and resumes from the
 * last `id:` it saw. Handlers get the parsed data and the event's id.
 */
export function events(filter, { onJob, onBatch, onOpen, onError }) {
  const es = new EventSource(`v1/events${qs({ ...filter, access_token: token() })}`);
  const parse = (fn) => (e) => {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    fn(data, e.lastEventId);
  };
  es.addEventListener('job', parse(onJob));
  es.addEventListener('batch', parse(onBatch));
  es.addEventListener('open', () => onOpen());
  es.addEventListener('error', () => onError(es.readyState === EventSource.CLOSED));
  return es;
}
