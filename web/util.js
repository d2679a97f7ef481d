// Helpers of the dashboard page: DOM building, the API client, dates and
// numbers as the page shows them.

export const $ = (sel) => document.querySelector(sel);
const nf = new Intl.NumberFormat('en');
export const num = (n) => (n === null || n === undefined) ? '–' : nf.format(n);
export const isoDay = (d) => d ? d.toISOString().slice(0, 10) : '–';
export const isoMin = (d) => d ? d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : '–';

export function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
        if (c === null || c === undefined) continue;
        e.append(c instanceof Node ? c : String(c));
    }
    return e;
}

export async function call(url, opts = {}) {
    let r;
    try {
        r = await fetch(url, {
            method: opts.method || 'GET', cache: 'no-store',
            headers: { Accept: 'application/json', ...(opts.headers || {}) },
            body: opts.body,
        });
    } catch (e) {
        return { status: 0, ok: false, body: null, headers: new Headers(),
                 message: 'cannot reach the server: check the connection' };
    }
    let body = null;
    if (r.status !== 204 && r.status !== 304) {
        try { body = await r.json(); } catch (e) { body = null; }
    }
    const err = body && body.error;
    return {
        status: r.status, ok: r.ok, body, headers: r.headers,
        code: err ? err.code : null,
        message: err && err.message ? err.message
                 : (r.ok ? '' : `the server answered HTTP ${r.status}`),
    };
}

// epoch seconds, epoch ms or ISO text -> Date (or null)
export function toDate(v) {
    if (v === null || v === undefined || v === '') return null;
    if (typeof v === 'number') return new Date(v < 1e12 ? v * 1000 : v);
    const d = new Date(v);
    return isNaN(d) ? null : d;
}

export function ago(d) {
    if (!d) return '';
    const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400 * 2) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} days ago`;
}

export function duration(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 60000) return `${Math.round(ms / 1000)} s`;
    const m = Math.floor(ms / 60000);
    return `${m} min ${Math.round((ms - m * 60000) / 1000)} s`;
}

// short form for the table cell
export function contextShort(ctx) {
    const host = (h) => h.replace(/\.atlassian\.net$/, '');
    if (!ctx || ctx === 'org') return 'org-wide';
    let m = /^site:([^/]+)\/product:(.+)$/.exec(ctx);
    if (m) return `${m[2]} on ${host(m[1])}`;
    m = /^site:(.+)$/.exec(ctx);
    if (m) return `on ${host(m[1])}`;
    m = /^product:(.+)$/.exec(ctx);
    if (m) return `${m[1]}, all sites`;
    return ctx;
}

export function contextHint(ctx) {
    if (!ctx || ctx === 'org') return 'anywhere in the org';
    let m = /^site:([^/]+)\/product:(.+)$/.exec(ctx);
    if (m) return `${m[2]} on ${m[1]}`;
    m = /^site:(.+)$/.exec(ctx);
    if (m) return `on ${m[1]}`;
    m = /^product:(.+)$/.exec(ctx);
    if (m) return `${m[1]}, any site`;
    return ctx;
}

export function debounce(fn, ms) {
    let t;
    return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
