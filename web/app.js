// ngx_umlo dashboard page: the user browser, "Sync Users", dashboard cards
// and sync history.  Plain JavaScript, no dependencies: everything it loads
// comes from the nginx that serves it (see docs/dashboard.md).

import { $, el, call, num, toDate, isoMin, ago, duration, contextHint,
         debounce } from './util.js';
import { userRow, renderUtilisation, keyWarnings, historyItems,
         renderHistory } from './render.js';

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


const st = {
    filters: {}, sort: 'name', order: 'asc', limit: '50',
    cursors: [null], page: 0, next: null, total: null,
    rows: [], selection: new Set(), usersSeq: 0,
    status: null, etag: null, pollTimer: null, generation: null, okId: null,
    watching: null, seenRunning: new Set(), announced: new Set(),
    dashboard: null, historyMissing: false,
};



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
    const wrap = $('#users-table').parentElement;
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

function renderRows(meta) {
    const body = $('#users-body');
    if (!st.rows.length) {
        tableMessage('No user matches these filters.');
    } else {
        body.replaceChildren(...st.rows.map((u) => userRow(u, st.selection.has(u.id))));
    }
    const from = st.page * Number(st.limit);
    $('#table-summary').textContent = st.rows.length
        ? `${num(from + 1)}–${num(from + st.rows.length)} of ${num(st.total)} users`
          + ` · Last active ${contextHint(meta.context)}`
        : `0 of ${num(st.total)} users`;
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
    // JSON always: the server refuses other content types (no form can
    // start a sync from another site)
    const r = await call(api('sync'), {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(users ? { users } : { scope: 'full' }),
    });
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
    const r = await call(api('sync'), {
        method: 'DELETE', headers: { 'Content-Type': 'application/json' },
    });
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
    } else if (r.status === 304 && st.status) {
        // same document, but "5 min ago" and staleness move on
        renderSyncPanel(st.status);
        renderWarnings();
        renderAge();
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
            + `${(e.message || 'no message').replace(/\.$/, '')}. The previous data is still shown.`);
    } else {
        const e = y.error || {};
        setResult('info', `Sync cancelled${e.message ? `: ${e.message.replace(/\.$/, '')}` : ''}. `
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


// ---------------------------------------------------------------- history

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
