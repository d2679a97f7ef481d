// ngx_umlo dashboard page: the user browser, "Sync Users", dashboard cards
// and sync history.  Plain JavaScript, no dependencies: everything it loads
// comes from the nginx that serves it (see docs/dashboard.md).

'use strict';

const meta = document.querySelector('meta[name="umlo-api"]');
const API = new URL(meta ? meta.content : '../', location.href);
const api = (path) => new URL(path, API).href;

// Polling: slow while idle (a 304 costs a few bytes), fast while running.
const POLL_IDLE_MS = 10000;
const POLL_RUNNING_MS = 1000;
const STALE_HOURS = 26;           // a daily sync plus slack
const FILTERS = ['q', 'site', 'product', 'status', 'claim', 'group',
                 'inactive_days', 'never_active'];
const SORTS = ['name', 'email', 'last_active', 'created'];
const LIMITS = ['25', '50', '100', '250'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const PHASES = {
    plan: 'planning', fetch: 'reading users from Atlassian',
    write: 'writing to Redis', swap: 'making the new data current',
};

const $ = (sel) => document.querySelector(sel);
const nf = new Intl.NumberFormat('en');
const num = (n) => (n === null || n === undefined) ? '–' : nf.format(n);

const st = {
    filters: {}, sort: 'name', order: 'asc', limit: '50',
    cursors: [null], page: 0, next: null, total: null,
    rows: [], selection: new Set(), usersSeq: 0,
    status: null, etag: null, pollTimer: null, generation: null, okId: null,
    watching: null, seenRunning: new Set(), announced: new Set(),
    dashboard: null, historyMissing: false,
};


// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
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

async function call(url, opts = {}) {
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
function toDate(v) {
    if (v === null || v === undefined || v === '') return null;
    if (typeof v === 'number') return new Date(v < 1e12 ? v * 1000 : v);
    const d = new Date(v);
    return isNaN(d) ? null : d;
}

const isoDay = (d) => d ? d.toISOString().slice(0, 10) : '–';
const isoMin = (d) => d ? d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : '–';

function ago(d) {
    if (!d) return '';
    const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400 * 2) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} days ago`;
}

function duration(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 60000) return `${Math.round(ms / 1000)} s`;
    const m = Math.floor(ms / 60000);
    return `${m} min ${Math.round((ms - m * 60000) / 1000)} s`;
}

// short form for the table cell
function contextShort(ctx) {
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

function contextHint(ctx) {
    if (!ctx || ctx === 'org') return 'anywhere in the org';
    let m = /^site:([^/]+)\/product:(.+)$/.exec(ctx);
    if (m) return `${m[2]} on ${m[1]}`;
    m = /^site:(.+)$/.exec(ctx);
    if (m) return `on ${m[1]}`;
    m = /^product:(.+)$/.exec(ctx);
    if (m) return `${m[1]}, any site`;
    return ctx;
}


// ---------------------------------------------------------------- URL state

function readUrl() {
    const p = new URLSearchParams(location.search);
    st.filters = {};
    for (const f of FILTERS) {
        const v = p.get(f);
        if (v !== null && v !== '') st.filters[f] = v;
    }
    st.sort = SORTS.includes(p.get('sort')) ? p.get('sort') : 'name';
    st.order = p.get('order') === 'desc' ? 'desc' : 'asc';
    st.limit = LIMITS.includes(p.get('limit')) ? p.get('limit') : '50';
}

function pageQuery() {
    const p = new URLSearchParams();
    for (const f of FILTERS) if (st.filters[f]) p.set(f, st.filters[f]);
    if (st.sort !== 'name') p.set('sort', st.sort);
    if (st.order !== 'asc') p.set('order', st.order);
    if (st.limit !== '50') p.set('limit', st.limit);
    return p;
}

function writeUrl(push) {
    const q = pageQuery().toString();
    const url = location.pathname + (q ? '?' + q : '') + location.hash;
    if (url === location.pathname + location.search + location.hash) return;
    history[push ? 'pushState' : 'replaceState'](null, '', url);
}

// the API query of the current view; CSV omits paging
function apiQuery(cursor, csv) {
    const p = new URLSearchParams();
    for (const f of FILTERS) if (st.filters[f]) p.set(f, st.filters[f]);
    p.set('sort', st.sort);
    p.set('order', st.order);
    if (csv) {
        p.set('format', 'csv');
    } else {
        p.set('limit', st.limit);
        if (cursor) p.set('cursor', cursor);
    }
    return p.toString();
}


// ---------------------------------------------------------------- filters

function setSelect(sel, value) {
    if (value && ![...sel.options].some((o) => o.value === value)) {
        // a value from the URL the facets do not list: keep it visible
        sel.append(el('option', { value, text: value }));
    }
    sel.value = value || '';
}

function formFromState() {
    const f = st.filters;
    $('#f-q').value = f.q || '';
    setSelect($('#f-site'), f.site);
    setSelect($('#f-product'), f.product);
    setSelect($('#f-status'), f.status);
    setSelect($('#f-claim'), f.claim);
    setSelect($('#f-group'), f.group);
    $('#f-inactive').value = f.inactive_days || '';
    $('#f-never').checked = f.never_active === 'true';
    $('#f-limit').value = st.limit;
    $('#csv-link').href = api('users?' + apiQuery(null, true));
    for (const th of document.querySelectorAll('th[data-sort]')) {
        const on = th.dataset.sort === st.sort;
        if (on) th.setAttribute('aria-sort', st.order === 'asc' ? 'ascending' : 'descending');
        else th.removeAttribute('aria-sort');
    }
}

function stateFromForm() {
    const f = {};
    const v = (id) => $(id).value.trim();
    if (v('#f-q')) f.q = v('#f-q');
    if (v('#f-site')) f.site = v('#f-site');
    if (v('#f-product')) f.product = v('#f-product');
    if (v('#f-status')) f.status = v('#f-status');
    if (v('#f-claim')) f.claim = v('#f-claim');
    if (v('#f-group')) f.group = v('#f-group');
    if (v('#f-inactive') !== '') f.inactive_days = v('#f-inactive');
    if ($('#f-never').checked) f.never_active = 'true';
    st.filters = f;
    st.limit = $('#f-limit').value;
}

function filtersChanged(push) {
    stateFromForm();
    st.selection.clear();
    st.cursors = [null];
    st.page = 0;
    writeUrl(push);
    formFromState();
    loadUsers();
}

function fillOptions(sel, items, first) {
    const keep = sel.value;
    sel.replaceChildren(el('option', { value: '', text: first }));
    for (const [value, label] of items) sel.append(el('option', { value, text: label }));
    setSelect(sel, keep);
}

async function loadFacets() {
    const r = await call(api('users/facets'));
    if (!r.ok || !r.body) return;
    const f = r.body;
    const label = (name, n) => n === undefined ? name : `${name} (${num(n)})`;
    fillOptions($('#f-site'), (f.sites || []).map((s) => [s.host, label(s.host, s.users)]), 'Any site');
    fillOptions($('#f-product'), (f.products || []).map((p) => [p.key, label(p.key, p.users)]), 'Any product');
    fillOptions($('#f-status'), (f.status || []).map((s) => [s.value, label(s.value, s.users)]), 'Any status');
    fillOptions($('#f-claim'), (f.claim || []).map((s) => [s.value, label(s.value, s.users)]), 'Any');
    fillOptions($('#f-group'), (f.groups || []).map((g) => [g.id, label(g.name, g.users)]), 'Any group');
    formFromState();
}


// ---------------------------------------------------------------- users table

function tableMessage(text) {
    const row = el('tr', { class: 'message' },
        el('td', { colspan: '9' }, text));
    $('#users-body').replaceChildren(row);
}

async function loadUsers() {
    const seq = ++st.usersSeq;
    const wrap = $('.table-wrap');
    wrap.setAttribute('aria-busy', 'true');
    const r = await call(api('users?' + apiQuery(st.cursors[st.page])));
    if (seq !== st.usersSeq) return;           // a newer request won
    wrap.removeAttribute('aria-busy');

    if (r.status === 409 && r.code === 'snapshot_changed') {
        st.cursors = [null];
        st.page = 0;
        return loadUsers();
    }
    if (!r.ok || !r.body) {
        st.rows = [];
        st.next = null;
        st.total = null;
        tableMessage(r.code === 'no_snapshot'
            ? 'No data yet: press "Sync Users" to read the organization.'
            : r.message);
        $('#table-summary').textContent = r.code === 'no_snapshot' ? 'No data yet.'
            : 'The user list could not be loaded.';
        renderPager();
        renderSelection();
        return;
    }
    st.rows = r.body.data || [];
    st.next = (r.body.links && r.body.links.next) || null;
    st.total = r.body.meta ? r.body.meta.total : null;
    renderRows(r.body.meta || {});
    renderPager();
    renderSelection();
}

function listCell(items, max) {
    if (!items.length) return el('span', { class: 'muted', text: '–' });
    const shown = items.slice(0, max).join(', ');
    const more = items.length > max ? ` +${items.length - max}` : '';
    return el('span', { title: items.join(', ') }, shown + more);
}

function renderRows(meta) {
    const body = $('#users-body');
    if (!st.rows.length) {
        tableMessage('No user matches these filters.');
    } else {
        body.replaceChildren(...st.rows.map(userRow));
    }
    const from = st.page * Number(st.limit);
    $('#table-summary').textContent = st.rows.length
        ? `${num(from + 1)}–${num(from + st.rows.length)} of ${num(st.total)} users`
          + ` · Last active ${contextHint(meta.context)}`
        : `0 of ${num(st.total)} users`;
}

function userRow(u) {
    const name = u.name || '(no name)';
    const box = el('input', { type: 'checkbox', class: 'row-select',
        'aria-label': `Select ${name}`, 'data-id': u.id });
    box.checked = st.selection.has(u.id);

    const products = [];
    const seen = new Map();
    for (const p of u.products || []) seen.set(p.product, (seen.get(p.product) || 0) + 1);
    for (const [k, n] of seen) products.push(n > 1 ? `${k} ×${n}` : k);

    const la = u.last_active || {};
    const ctx = contextHint(la.context);
    const short = contextShort(la.context);
    let active;
    if (u.never_active) {
        active = el('div', { class: 'la',
                             title: `Never active ${ctx}; the date is when the user was added to the org` },
            el('span', { class: 'badge never', text: 'Never active' }),
            el('small', {}, `added ${isoDay(toDate(la.at || u.created))} · ${short}`));
    } else {
        const d = toDate(la.at);
        active = el('div', { class: 'la', title: `Last active ${ctx}: ${d ? d.toISOString() : '–'}` },
            el('time', { datetime: la.at || '' }, isoDay(d)),
            el('small', {}, `${ago(d)} · ${short}`));
    }

    return el('tr', { 'data-id': u.id, class: st.selection.has(u.id) ? 'selected' : null },
        el('td', { class: 'sel' }, box),
        el('td', { class: 'name', title: name }, name),
        el('td', { class: 'email', title: u.email || '' },
            u.email || el('span', { class: 'muted', text: 'hidden' })),
        el('td', {}, el('span', { class: `badge st-${u.status}`, text: u.status || '–' })),
        el('td', {}, listCell((u.sites || []).map((s) => s.replace(/\.atlassian\.net$/, '')), 2)),
        el('td', {}, listCell(products, 2)),
        el('td', {}, listCell((u.groups || []).map((g) => g.name), 2)),
        el('td', {}, active),
        el('td', {}, el('time', { datetime: u.created || '' }, isoDay(toDate(u.created)))));
}

function renderPager() {
    $('#prev-btn').disabled = st.page === 0;
    $('#next-btn').disabled = !st.next;
    const pages = st.total ? Math.max(1, Math.ceil(st.total / Number(st.limit))) : 1;
    $('#page-info').textContent = st.total === null ? '' : `Page ${st.page + 1} of ${pages}`;
}

function renderSelection() {
    const n = st.selection.size;
    $('#sel-count').textContent = `(${n})`;
    const running = st.status && st.status.running;
    $('#sync-selected-btn').disabled = n === 0 || !!running;
    const ids = st.rows.map((u) => u.id);
    const on = ids.filter((id) => st.selection.has(id)).length;
    const all = $('#select-page');
    all.checked = ids.length > 0 && on === ids.length;
    all.indeterminate = on > 0 && on < ids.length;
    all.disabled = ids.length === 0;
    for (const box of document.querySelectorAll('.row-select')) {
        box.checked = st.selection.has(box.dataset.id);
        box.closest('tr').classList.toggle('selected', box.checked);
    }
}


// ---------------------------------------------------------------- sync

function setResult(kind, text) {
    const r = $('#sync-result');
    r.dataset.kind = kind || '';
    r.textContent = text || '';
}

async function startSync(users) {
    $('#sync-btn').disabled = true;
    $('#sync-selected-btn').disabled = true;
    setResult('', '');
    const r = await call(api('sync'), users
        ? { method: 'POST', headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ users }) }
        : { method: 'POST' });
    if (r.status === 202 && r.body) {
        st.watching = r.body.id;
    } else if (r.status === 409 && r.body && r.body.sync) {
        st.watching = r.body.sync.id;
        setResult('info', 'A sync was already running (started elsewhere): following it.');
    } else {
        setResult('error', `The sync could not start: ${r.message}`);
    }
    pollStatus();
}

async function cancelSync() {
    const r = await call(api('sync'), { method: 'DELETE' });
    if (!r.ok && r.code !== 'not_running') setResult('error', `Cancel failed: ${r.message}`);
    pollStatus();
}

function schedulePoll() {
    clearTimeout(st.pollTimer);
    const fast = (st.status && st.status.running) || st.watching;
    st.pollTimer = setTimeout(pollStatus, fast ? POLL_RUNNING_MS : POLL_IDLE_MS);
}

async function pollStatus() {
    clearTimeout(st.pollTimer);
    const r = await call(api('status'), {
        headers: st.etag ? { 'If-None-Match': st.etag } : {},
    });
    if (r.status === 200 && r.body) {
        st.etag = r.headers.get('ETag');
        onStatus(r.body);
    } else if (r.status !== 304) {
        $('#sync-status').textContent = `Sync status unavailable: ${r.message}`;
    }
    schedulePoll();
}

function onStatus(s) {
    const y = s.sync;
    const gen = s.snapshot ? s.snapshot.generation : null;
    // a selective sync changes users without a new generation: its id
    // marks the change
    const okId = y && y.state === 'succeeded' ? y.id : st.okId;
    const changed = st.status !== null && (gen !== st.generation || okId !== st.okId);
    st.status = s;
    st.generation = gen;
    st.okId = okId;

    if (y && !TERMINAL.has(y.state)) st.seenRunning.add(y.id);
    renderSyncPanel(s);
    renderWarnings();
    renderAge();

    if (y && TERMINAL.has(y.state) && !st.announced.has(y.id)
        && (st.seenRunning.has(y.id) || st.watching === y.id)) {
        st.announced.add(y.id);
        if (st.watching === y.id) st.watching = null;
        announce(y);
        if (y.state === 'succeeded') {
            refreshAll(true);
            return;
        }
        loadHistory();
        loadDashboard();
    }
    // a sync this page did not watch changed the data (another admin, the
    // schedule, or one that ran while the tab slept): reload, keep the view
    if (changed) refreshAll(false);
}

function announce(y) {
    const c = y.counts || {};
    if (y.state === 'succeeded') {
        const what = y.trigger === 'selective'
            ? `${num(c.users)} selected user${c.users === 1 ? '' : 's'} updated`
            : `${num(c.users)} users, ${num(c.groups)} groups, ${num(c.sites)} sites, `
              + `${num(c.products)} products`;
        setResult('ok', `Sync succeeded: ${what} in ${duration(y.duration_ms)}.`);
    } else if (y.state === 'failed') {
        const e = y.error || {};
        setResult('error', `Sync failed${e.where ? ` (${e.where})` : ''}: `
            + `${e.message || 'no message'}. The previous data is still shown.`);
    } else {
        const e = y.error || {};
        setResult('info', `Sync cancelled${e.message ? `: ${e.message}` : ''}. `
            + 'The previous data is still shown.');
    }
}

function renderSyncPanel(s) {
    const y = s.sync;
    const panel = $('#sync-panel');
    const bar = $('#sync-progress');
    const running = !!s.running;
    panel.dataset.state = running ? 'running' : (y ? y.state : 'idle');
    $('#sync-btn').disabled = running;
    $('#cancel-btn').hidden = !running;
    renderSelection();

    if (running && y) {
        const p = y.progress || {};
        const phase = y.state === 'queued' ? 'waiting to start' : (PHASES[y.phase] || y.phase || 'starting');
        const kind = y.trigger === 'selective' ? 'Selective sync' : 'Sync';
        // the live region changes with the phase only, so that a screen
        // reader is not read every poll's numbers
        $('#sync-status').textContent = `${kind} running: ${phase}`;
        let line = p.expected ? `${num(p.done)} of ${num(p.expected)} users (${p.percent}%)`
                              : `${num(p.done || 0)} users`;
        if (p.eta_seconds !== null && p.eta_seconds !== undefined && y.phase === 'fetch')
            line += p.eta_seconds > 0 ? ` · about ${duration(p.eta_seconds * 1000)} left`
                                      : ' · almost done';
        if (p.percent !== null && p.percent !== undefined && p.expected) {
            bar.value = p.percent;
        } else {
            bar.removeAttribute('value');    // indeterminate
        }
        const c = y.counts || {};
        const a = y.api || {};
        $('#sync-counts').textContent = `${line} · groups ${num(c.groups)}`
            + ` · API calls ${num(a.calls)} · retries ${num(a.retries)}`
            + ` · rate-limited ${num(a.rate_limited)}`;
        return;
    }
    bar.value = 0;
    $('#sync-counts').textContent = '';
    if (!y) {
        $('#sync-status').textContent = 'No sync has run yet.';
        return;
    }
    const when = toDate(y.finished_at || y.started_at || y.requested_at);
    const kind = y.trigger === 'selective' ? 'selective sync' : `${y.trigger || ''} sync`.trim();
    $('#sync-status').textContent = `Last ${kind} ${y.state} ${ago(when)}`
        + ` (${isoMin(when)}, ${duration(y.duration_ms)}`
        + (y.counts && y.counts.users !== undefined ? `, ${num(y.counts.users)} users` : '') + ').';
}


// ---------------------------------------------------------------- warnings

// Key-expiry warnings, in whichever shape the server gives them.
function keyWarnings(doc) {
    const out = [];
    if (!doc) return out;
    for (const w of doc.warnings || []) out.push(typeof w === 'string' ? w : (w && w.message));
    for (const name of ['api_key', 'key', 'api_key_expiry']) {
        const k = doc[name];
        if (!k || typeof k !== 'object') continue;
        if (typeof k.warning === 'string') { out.push(k.warning); continue; }
        if (typeof k.message === 'string' && (k.expiring || k.expired || k.warning)) { out.push(k.message); continue; }
        if (k.expiring || k.expired || k.warning === true) {
            const at = toDate(k.expires_at || k.expires);
            const days = k.days_left !== undefined ? k.days_left : k.expires_in_days;
            out.push(k.expired ? `The API key expired${at ? ` on ${isoDay(at)}` : ''}: `
                + 'syncs will fail until it is replaced.'
                : `The API key expires${at ? ` on ${isoDay(at)}` : ''}`
                + `${days !== undefined ? ` (in ${days} days)` : ''}: create a new one and reload nginx.`);
        }
    }
    return out.filter(Boolean);
}

function renderWarnings() {
    const msgs = [...keyWarnings(st.status), ...keyWarnings(st.dashboard)];
    const asOf = toDate(st.status && st.status.snapshot && st.status.snapshot.data_as_of);
    if (asOf && Date.now() - asOf.getTime() > STALE_HOURS * 3600e3) {
        msgs.push(`The data is ${ago(asOf).replace(' ago', '')} old: run a sync, `
            + 'or check the daily schedule.');
    }
    const box = $('#warnings');
    const uniq = [...new Set(msgs)];
    const text = uniq.join('\n');
    if (box.dataset.text === text) return;
    box.dataset.text = text;
    box.replaceChildren(...uniq.map((m) => el('p', { text: m })));
}

function renderAge() {
    const snap = st.status && st.status.snapshot;
    const d = st.dashboard || {};
    const data = toDate((snap && snap.data_as_of) || d.data_as_of);
    const act = toDate(d.activity_as_of || (snap && snap.activity_as_of));
    $('#data-age').textContent = data
        ? `Data as of ${isoMin(data)} (${ago(data)})`
          + (act ? ` · activity as of ${isoMin(act)} (${ago(act)})` : '')
        : 'No data yet';
}


// ---------------------------------------------------------------- dashboard

function metric(name, value) {
    const e = document.querySelector(`[data-metric="${name}"]`);
    if (e) e.textContent = value;
}

async function loadDashboard() {
    const r = await call(api('dashboard'));
    st.dashboard = r.ok ? r.body : null;
    const d = st.dashboard || {};
    const ib = d.inactive_billable || {};
    metric('users', num(d.users));
    metric('billable_users', num(d.billable_users));
    metric('never_active', num(d.never_active));
    for (const w of [30, 60, 90, 180]) metric(`inactive_${w}`, num(ib[w]));
    metric('licence_waste', num(d.licence_waste));
    metric('licence_waste_note', `licensed, no activity anywhere for ${d.licence_waste_days || 90} days`);
    metric('data_as_of', d.data_as_of ? isoMin(toDate(d.data_as_of)) : '–');
    metric('activity_as_of', d.activity_as_of ? isoMin(toDate(d.activity_as_of))
        : (d.data_as_of ? 'not refreshed yet' : '–'));
    const ls = d.last_sync;
    metric('last_sync', ls ? `${ls.state}, ${duration(ls.duration_ms)}` : '–');
    renderUtilisation(d.sites || []);
    renderWarnings();
    renderAge();
}

function renderUtilisation(sites) {
    const rows = [];
    for (const s of sites) {
        for (const p of s.products || []) {
            const pct = p.utilisation_percent;
            const bar = el('div', { class: 'util-bar' });
            const fill = el('span', {});
            fill.style.width = `${pct === null || pct === undefined ? 0 : Math.min(100, pct)}%`;
            if (pct >= 90) fill.className = 'high';
            bar.append(fill);
            const ib = p.inactive_billable || {};
            rows.push(el('tr', {},
                el('td', {}, s.host), el('td', {}, p.product),
                el('td', { class: 'num' }, num(p.billable)),
                el('td', { class: 'num' }, p.capacity === null ? 'unknown' : num(p.capacity)),
                el('td', {}, el('div', { class: 'util-cell' }, bar,
                    el('span', {}, pct === null || pct === undefined ? '–' : `${pct}%`))),
                el('td', { class: 'num' }, num(ib[30])), el('td', { class: 'num' }, num(ib[90])),
                el('td', { class: 'num' }, num(ib[180])),
                el('td', { class: 'num' }, num(p.never_active_billable))));
        }
    }
    $('#util-table tbody').replaceChildren(...(rows.length ? rows
        : [el('tr', { class: 'message' }, el('td', { colspan: '9' }, 'No data yet.'))]));
}


// ---------------------------------------------------------------- history

function historyItems(body) {
    if (Array.isArray(body)) return body;
    if (!body) return [];
    for (const k of ['data', 'syncs', 'history', 'items']) if (Array.isArray(body[k])) return body[k];
    return [];
}

async function loadHistory() {
    const note = $('#history-note');
    const r = st.historyMissing ? null : await call(api('history'));
    if (!r || r.status === 404 || r.status === 405 || (r.status === 200 && !r.body)) {
        // not configured on this server: fall back to the last sync only
        st.historyMissing = true;
        note.textContent = 'Full history is not available from this server (no umlo_history '
            + 'location); showing the last sync.';
        const y = st.status && st.status.sync;
        renderHistory(y && TERMINAL.has(y.state) ? [y] : []);
        return;
    }
    if (!r.ok) {
        note.textContent = `History unavailable: ${r.message}`;
        return;
    }
    note.textContent = '';
    renderHistory(historyItems(r.body));
}

function renderHistory(items) {
    // newest first in the table, oldest first in the chart
    const list = items.slice().sort((a, b) =>
        (toDate(b.started_at || b.requested_at) || 0) - (toDate(a.started_at || a.requested_at) || 0));
    const rows = list.map((y) => el('tr', { class: `h-${y.state}` },
        el('td', {}, isoMin(toDate(y.started_at || y.requested_at))),
        el('td', {}, y.trigger || '–'),
        el('td', {}, el('span', { class: `badge out-${y.state}`, text: y.state || '–' })),
        el('td', { class: 'num' }, duration(y.duration_ms)),
        el('td', { class: 'num' }, num(y.counts ? y.counts.users : undefined)),
        el('td', { class: 'num' }, num(y.api ? y.api.calls : y.api_calls)),
        el('td', { class: 'msg' }, (y.error && y.error.message) || '')));
    $('#history-table tbody').replaceChildren(...(rows.length ? rows
        : [el('tr', { class: 'message' }, el('td', { colspan: '7' }, 'No sync has finished yet.'))]));
    renderChart(list.slice(0, 30).reverse());
}

function renderChart(items) {
    const box = $('#history-chart');
    const data = items.filter((y) => typeof y.duration_ms === 'number');
    if (data.length < 2) {
        box.replaceChildren();
        box.hidden = true;
        return;
    }
    box.hidden = false;
    const NS = 'http://www.w3.org/2000/svg';
    const W = 600, H = 120, pad = 4;
    const max = Math.max(...data.map((y) => y.duration_ms), 1);
    const bw = (W - pad * 2) / data.length;
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H + 16}`);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', `Durations of the last ${data.length} syncs, oldest to newest; `
        + `longest ${duration(max)}`);
    data.forEach((y, i) => {
        const h = Math.max(2, (y.duration_ms / max) * (H - pad));
        const r = document.createElementNS(NS, 'rect');
        r.setAttribute('x', pad + i * bw + 1);
        r.setAttribute('y', H - h);
        r.setAttribute('width', Math.max(1, bw - 2));
        r.setAttribute('height', h);
        r.setAttribute('class', `bar-${y.state}`);
        const t = document.createElementNS(NS, 'title');
        t.textContent = `${isoMin(toDate(y.started_at))}: ${y.trigger} ${y.state}, ${duration(y.duration_ms)}`;
        r.append(t);
        svg.append(r);
    });
    const label = document.createElementNS(NS, 'text');
    label.setAttribute('x', pad);
    label.setAttribute('y', H + 13);
    label.textContent = `longest ${duration(max)} · red: failed · amber: cancelled`;
    svg.append(label);
    box.replaceChildren(svg);
}


// ---------------------------------------------------------------- wiring

function refreshAll(clearSelection) {
    if (clearSelection) st.selection.clear();
    st.cursors = [null];
    st.page = 0;
    loadFacets();
    loadDashboard();
    loadHistory();
    return loadUsers();
}

function debounce(fn, ms) {
    let t;
    return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function wire() {
    const form = $('#filters');
    form.addEventListener('submit', (e) => { e.preventDefault(); filtersChanged(true); });
    for (const id of ['#f-site', '#f-product', '#f-status', '#f-claim', '#f-group', '#f-never', '#f-limit']) {
        $(id).addEventListener('change', () => filtersChanged(true));
    }
    const typed = debounce(() => filtersChanged(false), 300);
    $('#f-q').addEventListener('input', typed);
    $('#f-inactive').addEventListener('input', () => {
        if ($('#f-inactive').checkValidity()) typed();
    });
    $('#f-reset').addEventListener('click', () => {
        form.reset();
        for (const s of form.querySelectorAll('select')) s.value = '';
        filtersChanged(true);
    });

    for (const th of document.querySelectorAll('th[data-sort]')) {
        th.querySelector('button').addEventListener('click', () => {
            const key = th.dataset.sort;
            if (st.sort === key) st.order = st.order === 'asc' ? 'desc' : 'asc';
            else { st.sort = key; st.order = 'asc'; }
            st.cursors = [null];
            st.page = 0;
            writeUrl(true);
            formFromState();
            loadUsers();
        });
    }

    $('#prev-btn').addEventListener('click', () => {
        if (st.page > 0) { st.page--; loadUsers(); }
    });
    $('#next-btn').addEventListener('click', () => {
        if (!st.next) return;
        st.cursors[st.page + 1] = st.next;
        st.page++;
        loadUsers();
    });

    $('#users-body').addEventListener('change', (e) => {
        const box = e.target.closest('.row-select');
        if (!box) return;
        if (box.checked) st.selection.add(box.dataset.id);
        else st.selection.delete(box.dataset.id);
        renderSelection();
    });
    $('#select-page').addEventListener('change', (e) => {
        for (const u of st.rows) {
            if (e.target.checked) st.selection.add(u.id);
            else st.selection.delete(u.id);
        }
        renderSelection();
    });

    $('#sync-btn').addEventListener('click', () => startSync(null));
    $('#sync-selected-btn').addEventListener('click', () => startSync([...st.selection]));
    $('#cancel-btn').addEventListener('click', cancelSync);

    window.addEventListener('popstate', () => {
        readUrl();
        formFromState();
        st.cursors = [null];
        st.page = 0;
        loadUsers();
    });
    // back from another tab or window: look at once, not at the next tick
    document.addEventListener('visibilitychange', () => {
        if (!document.hidden) pollStatus();
    });
}

async function init() {
    readUrl();
    formFromState();
    wire();
    await pollStatus();
    await Promise.all([loadFacets(), loadDashboard(), loadUsers()]);
    loadHistory();
    document.body.dataset.ready = 'true';
}

init();
