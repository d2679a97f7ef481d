// End-to-end test of the dashboard page (web/) in headless Chromium.
// Run by t/browser.t, which starts Redis, the simulator and nginx and
// passes their URLs in the environment; prints TAP.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.UMLO_BASE;
const PAGE = process.env.UMLO_PAGE;
const SIM = process.env.UMLO_SIM;
const HAS_HISTORY = process.env.UMLO_HAS_HISTORY === '1';
const OUT = process.env.UMLO_BROWSER_OUT || 'build/browser';
const ORIGIN = new URL(BASE).origin;
mkdirSync(OUT, { recursive: true });

// ---------------------------------------------------------------- TAP

let n = 0;
let failed = 0;
function ok(cond, name, diag) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? '' : 'not '}ok ${n} - ${name}`);
    if (!cond && diag !== undefined) {
        for (const l of String(diag).split('\n')) console.log(`# ${l}`);
    }
    return cond;
}
const is = (got, want, name) =>
    ok(got === want, name, `got:  ${JSON.stringify(got)}\nwant: ${JSON.stringify(want)}`);
const note = (m) => console.log(`# ${m}`);

async function step(name, fn) {
    note(`--- ${name}`);
    try {
        await fn();
    } catch (e) {
        ok(false, `${name}: ${e.message.split('\n')[0]}`, e.stack);
    }
}

async function waitFor(fn, what, timeout = 20000) {
    const end = Date.now() + timeout;
    let last;
    for (;;) {
        try {
            last = await fn();
            if (last) return last;
        } catch (e) {
            last = e.message;
        }
        if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

// ---------------------------------------------------------------- servers

async function api(path, opts = {}) {
    const r = await fetch(new URL(path, BASE), {
        method: opts.method || 'GET',
        // umlo_sync takes JSON only, also without a body
        headers: opts.method && opts.method !== 'GET' ? { 'Content-Type': 'application/json' } : {},
        body: opts.json ? JSON.stringify(opts.json) : undefined,
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) { /* CSV or empty */ }
    return { status: r.status, json, text };
}

async function sim(method, path, json) {
    const r = await fetch(new URL(`/__sim/${path}`, SIM), {
        method,
        headers: json ? { 'Content-Type': 'application/json' } : {},
        body: json ? JSON.stringify(json) : undefined,
    });
    if (r.status !== 200) throw new Error(`sim ${method} ${path}: ${r.status} ${await r.text()}`);
    return r.json();
}

const status = async () => (await api('/umlo/status')).json;
async function waitIdle() {
    return waitFor(async () => { const s = await status(); return !s.running && s; },
                   'the sync to end', 60000);
}
// latency per API answer: makes a sync last long enough to watch
const slow = (ms) => sim('POST', 'config', { latencyMs: ms, jitterMs: 0 });

// ---------------------------------------------------------------- page

const browser = await chromium.launch({
    executablePath: process.env.UMLO_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
const foreign = [];
const pageErrors = [];
const statusReqs = [];
context.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol !== 'data:' && u.origin !== ORIGIN) foreign.push(req.url());
    if (u.pathname === '/umlo/status') statusReqs.push({ inm: req.headers()['if-none-match'] || null });
});
context.on('response', (res) => {
    if (new URL(res.url()).pathname === '/umlo/status') statusReqs.push({ code: res.status() });
});

const page = await context.newPage();
page.on('pageerror', (e) => pageErrors.push(e.message));
// the 404s and 409s the page handles are logged by Chromium as failed loads
page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded/.test(m.text()))
        pageErrors.push(m.text());
});

const text = async (sel) => ((await page.locator(sel).first().textContent()) || '').trim();
const shot = (name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
const ready = () => page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
const rowNames = () => page.locator('#users-body td.name').allTextContents();
// position in the document, whatever the scroll
const tableTop = () => page.evaluate(
    () => document.querySelector('#users-table').getBoundingClientRect().y + window.scrollY);
const layout = () => page.evaluate(() => ['.cards', '.section-head', '#sync-panel', '#filters',
    '#table-summary', '#users-table'].map((s) => {
    const r = document.querySelector(s).getBoundingClientRect();
    return `${s} y=${r.y + window.scrollY} h=${r.height}`;
}).join('\n'));
// every text the sync panel showed, so that short states are not missed
const watchPanel = () => page.evaluate(() => {
    window.seen = [];
    const grab = () => {
        const t = ['#sync-status', '#sync-counts'].map((s) => document.querySelector(s).textContent)
            .join(' | ');
        const running = document.querySelector('#sync-panel').dataset.state === 'running';
        const bar = document.querySelector('#sync-progress');
        const cancel = !document.querySelector('#cancel-btn').hidden;
        const disabled = document.querySelector('#sync-btn').disabled;
        const s = JSON.stringify({ t, running, cancel, disabled,
                                   bar: bar.getBoundingClientRect().width > 0
                                        && getComputedStyle(bar).visibility === 'visible' });
        if (window.seen[window.seen.length - 1] !== s) window.seen.push(s);
    };
    new MutationObserver(grab).observe(document.querySelector('#sync-panel'),
        { subtree: true, childList: true, characterData: true, attributes: true });
    const cancel = document.querySelector('#cancel-btn');
    new MutationObserver(grab).observe(cancel, { attributes: true });
});
const panelSeen = async () => (await page.evaluate(() => window.seen)).map((x) => JSON.parse(x));
let layout0;
const summaryTotal = async () => {
    const m = /of ([\d,]+) users/.exec(await text('#table-summary'));
    return m ? Number(m[1].replace(/,/g, '')) : null;
};
const checkedIds = () => page.locator('.row-select:checked').evaluateAll(
    (els) => els.map((e) => e.dataset.id));

// ---------------------------------------------------------------- tests

await step('before the first sync', async () => {
    await page.goto(PAGE);
    await ready();
    is(await page.title(), 'Atlassian users · ngx_umlo', 'the page loads');
    ok(/No data yet/.test(await text('#users-body')), 'the table says there is no data yet');
    is(await text('#sync-status'), 'No sync has run yet.', 'and that no sync ran');
    ok(await page.locator('#sync-btn').isEnabled(), '"Sync Users" is enabled');
});

let top0;
await step('Sync Users: processing state, then the confirmation', async () => {
    // slow pages of users: the sync stays a few seconds in its fetch
    // phase with a known total, long enough for one-second polls to see
    await slow(250);
    await sim('POST', 'faults', { hang: { rate: 1, delayMs: 1000, match: 'users/search' } });
    top0 = await tableTop();
    layout0 = await layout();
    await watchPanel();
    await page.click('#sync-btn');
    await waitFor(async () => /Sync running/.test(await text('#sync-status')),
                  'the running state');
    await shot('01-sync-running');
    is(await tableTop(), top0, 'the table did not move when the sync started');
    await waitFor(async () => /Sync succeeded/.test(await text('#sync-result')),
                  'the confirmation', 60000);
    const seen = (await panelSeen()).filter((x) => x.running);
    for (const x of seen) note(`seen: ${x.t}`);
    ok(seen.length > 0, 'the processing state showed');
    ok(seen.every((x) => x.disabled), '"Sync Users" was disabled while it ran');
    ok(seen.every((x) => x.cancel), 'a Cancel button showed');
    ok(seen.every((x) => x.bar), 'the progress bar showed');
    ok(seen.some((x) => /reading users|writing|planning|current/.test(x.t)), 'with its phase',
       seen.map((x) => x.t).join('\n'));
    ok(seen.some((x) => /[\d,]+ of [\d,]+ users \(\d+%\)/.test(x.t)), 'progress in users and percent');
    ok(seen.some((x) => /users.* · groups [\d,]+ · API calls [\d,]+/.test(x.t)), 'and the counts');
    const s = await status();
    const msg = await text('#sync-result');
    ok(msg.includes(`${s.sync.counts.users.toLocaleString('en')} users`), 'the confirmation has the user count', msg);
    ok(/ in \d+(\.\d)? m?s\.$/.test(msg), 'and the duration', msg);
    await waitFor(async () => (await summaryTotal()) === s.snapshot.counts.users, 'the table to fill');
    is(await summaryTotal(), s.snapshot.counts.users, 'the table refreshed by itself with every user');
    is(await page.locator('#users-body tr').count(), 50, 'one page of 50 rows');
    is(await tableTop(), top0, 'the table did not move');
    ok(await page.locator('#sync-btn').isEnabled(), '"Sync Users" is enabled again');
    await sim('DELETE', 'faults');
    await slow(0);
});

await step('the API key expiry warning', async () => {
    const k = (await status()).api_key;
    ok(k && k.expiring && k.warning, 'the server warns that the key expires soon', JSON.stringify(k));
    const shown = (await text('#warnings')).toLowerCase();
    ok(shown.includes(k.warning.toLowerCase()), 'the page shows the server\'s warning', shown);
    is(await page.locator('#warnings').getAttribute('role'), 'alert', 'as an alert');
});

await step('dashboard cards and utilisation', async () => {
    const d = (await api('/umlo/dashboard')).json;
    await waitFor(async () => (await text('[data-metric="users"]')) === d.users.toLocaleString('en'),
                  'the users card');
    is(await text('[data-metric="billable_users"]'), d.billable_users.toLocaleString('en'), 'billable card');
    is(await text('[data-metric="inactive_90"]'), d.inactive_billable['90'].toLocaleString('en'),
       'inactive ≥ 90 days card');
    is(await text('[data-metric="never_active"]'), d.never_active.toLocaleString('en'), 'never active card');
    const products = d.sites.reduce((a, s) => a + s.products.length, 0);
    is(await page.locator('#util-table tbody tr').count(), products, 'one utilisation row per product');
    ok(/^Data as of \d{4}-\d\d-\d\d \d\d:\d\d UTC/.test(await text('#data-age')), 'the data age shows');
});

await step('history', async () => {
    await waitFor(async () => (await page.locator('#history-table tbody tr.h-succeeded').count()) >= 1,
                  'a history row');
    ok(/ m?s$/.test(await text('#history-table tbody tr.h-succeeded td:nth-child(4)')),
       'the last sync is listed with its duration');
    const note = await text('#history-note');
    if (HAS_HISTORY) is(note, '', 'history comes from the history location');
    else ok(/not available/.test(note), 'without a history location the page says so', note);
});

await step('filters, sorting and paging', async () => {
    await page.selectOption('#f-status', 'active');
    await page.fill('#f-inactive', '30');
    await waitFor(async () => new URL(page.url()).searchParams.get('inactive_days') === '30', 'the URL');
    const want = (await api('/umlo/users?status=active&inactive_days=30&limit=1')).json.meta.total;
    await waitFor(async () => (await summaryTotal()) === want, 'the filtered total');
    is(await summaryTotal(), want, 'the filtered total matches the API');
    const url = new URL(page.url());
    is(url.searchParams.get('status'), 'active', 'the status filter is in the URL');
    const badges = await page.locator('#users-body .badge[class*="st-"]').allTextContents();
    ok(badges.length > 0 && badges.every((b) => b === 'active'), 'every row is active');

    await page.click('th[data-sort="last_active"] button');
    await waitFor(async () => new URL(page.url()).searchParams.get('sort') === 'last_active', 'sort in URL');
    is(await page.getAttribute('th[data-sort="last_active"]', 'aria-sort'), 'ascending', 'aria-sort says ascending');
    const first = (await api('/umlo/users?status=active&inactive_days=30&sort=last_active&limit=1')).json.data[0];
    await waitFor(async () => (await rowNames())[0] === first.name, 'the sorted first row');
    ok(true, 'the first row is the longest idle user');
    const cell = page.locator('#users-body tr:first-child td:nth-child(8) .la');
    const hint = `${await cell.textContent()} | ${await cell.getAttribute('title')}`;
    ok(/org-wide/.test(hint) && /anywhere in the org/.test(hint),
       'Last active says which context it comes from', hint);

    const page1 = await rowNames();
    if (want > 50) {
        await page.click('#next-btn');
        await waitFor(async () => /^Page 2 of/.test(await text('#page-info')), 'page 2');
        const page2 = await rowNames();
        ok(page2.length > 0 && page2[0] !== page1[0], 'Next shows the next page');
        await page.click('#prev-btn');
        await waitFor(async () => (await rowNames())[0] === page1[0], 'page 1 again');
        ok(true, 'Previous goes back');
    }
    await page.click('th[data-sort="name"] button');
    await waitFor(async () => new URL(page.url()).searchParams.get('sort') === null, 'sort by name');
});

await step('never active users are marked', async () => {
    await page.check('#f-never');
    const want = (await api('/umlo/users?status=active&inactive_days=30&never_active=true&limit=1')).json.meta.total;
    await waitFor(async () => (await summaryTotal()) === want, 'never active total');
    const rows = await page.locator('#users-body tr').count();
    const marked = await page.locator('#users-body .badge.never').count();
    ok(want > 0 && rows === Math.min(want, 50) && marked === rows, 'each never-active row is marked',
       `want ${want} rows ${rows} marked ${marked}`);
    await page.uncheck('#f-never');
    await waitFor(async () => new URL(page.url()).searchParams.get('never_active') === null, 'unchecked');
});

await step('CSV export of the filtered view', async () => {
    const href = await page.getAttribute('#csv-link', 'href');
    const u = new URL(href, PAGE);
    is(u.origin, ORIGIN, 'the CSV comes from the same server');
    is(u.searchParams.get('format'), 'csv', 'as CSV');
    is(u.searchParams.get('status'), 'active', 'with the filters');
    const r = await api(u.pathname + u.search);
    const lines = r.text.trimEnd().split('\r\n');
    const total = (await api('/umlo/users?status=active&inactive_days=30&limit=1')).json.meta.total;
    ok(/^id,name,email/.test(lines[0]), 'a header row');
    is(lines.length - 1, total, 'one line per matching user');
});

await step('select rows, sync: filters kept, table refreshed, selection cleared', async () => {
    const names = await rowNames();
    await page.locator('.row-select').nth(1).check();
    await page.locator('.row-select').nth(2).check();
    is(await text('#sel-count'), '(2)', 'two rows selected');
    ok(await page.locator('#sync-selected-btn').isEnabled(), '"Sync selected" is enabled');

    // a change behind our back that the refreshed table must show
    const target = (await api('/umlo/users?status=active&inactive_days=30&limit=1')).json.data[0];
    await sim('PATCH', `users/${encodeURIComponent(target.id)}`, { name: 'AAA Refreshed' });
    is(names[0], target.name, 'the user renamed is on the page');

    const before = new URL(page.url()).search;
    await slow(100);
    await page.click('#sync-btn');
    await waitFor(async () => /Sync running/.test(await text('#sync-status')), 'running');
    await waitFor(async () => /Sync succeeded/.test(await text('#sync-result')), 'success', 60000);
    await slow(0);
    await waitFor(async () => (await rowNames())[0] === 'AAA Refreshed', 'the new name');
    ok(true, 'the table refreshed by itself (the renamed user shows)');
    is(new URL(page.url()).search, before, 'the filters stayed in the URL');
    is(await page.inputValue('#f-status'), 'active', 'and in the form');
    is(await page.inputValue('#f-inactive'), '30', 'inactive days kept');
    is(await text('#sel-count'), '(0)', 'the selection is cleared');
    is((await checkedIds()).length, 0, 'no row is checked');
    ok(await page.locator('#sync-selected-btn').isDisabled(), '"Sync selected" is disabled');
    ok(await tableTop() === top0, 'no layout jump after the refresh',
       `before:\n${layout0}\nnow:\n${await layout()}`);
    await shot('02-after-sync-filtered');
});

await step('selective sync of selected rows', async () => {
    const rows = (await api('/umlo/users?status=active&inactive_days=30&limit=4')).json.data;
    const pick = rows[3];
    await sim('PATCH', `users/${encodeURIComponent(pick.id)}`, { name: 'AAB Selective' });
    const box = page.locator(`.row-select[data-id="${pick.id}"]`);
    await box.check();
    is(await text('#sel-count'), '(1)', 'one row selected');
    await page.click('#sync-selected-btn');
    await waitFor(async () => /Sync succeeded: 1 selected user updated/.test(await text('#sync-result')),
                  'the selective confirmation', 60000);
    const s = await status();
    is(s.sync.trigger, 'selective', 'the server ran a selective sync');
    await waitFor(async () => (await rowNames()).includes('AAB Selective'), 'the new name');
    ok(true, 'the selected user shows its new state');
    is(await text('#sel-count'), '(0)', 'the selection is cleared');
});

await step('a failing sync shows the server\'s message', async () => {
    await sim('POST', 'faults', { keyExpiresAt: Math.floor(Date.now() / 1000) - 60 });
    await page.click('#sync-btn');
    await waitFor(async () => /Sync failed/.test(await text('#sync-result')), 'the failure', 60000);
    const s = await status();
    is(s.sync.state, 'failed', 'the server says failed');
    const msg = await text('#sync-result');
    ok(msg.includes(s.sync.error.message.replace(/\.$/, '')), 'the page shows the server\'s message',
       `${msg}\n${s.sync.error.message}`);
    ok(/401|key/i.test(msg), 'which names the key problem', msg);
    is(await page.locator('#sync-result').getAttribute('role'), 'alert', 'announced as an alert');
    ok((await summaryTotal()) > 0, 'the previous data is still shown');
    await shot('03-sync-failed');
    await sim('DELETE', 'faults');
});

await step('a sync started elsewhere, seen after navigating back', async () => {
    await page.goto('about:blank');
    await slow(150);
    const r = await api('/umlo/sync', { method: 'POST' });
    is(r.status, 202, 'another admin starts a sync');
    await page.goto(PAGE + '?status=active');
    await ready();
    await waitFor(async () => /Sync running/.test(await text('#sync-status')), 'running on load');
    ok(true, 'coming back shows it running');
    const again = await api('/umlo/sync', { method: 'POST' });
    is(again.status, 409, 'a second start is refused with 409');
    await waitFor(async () => /Sync succeeded/.test(await text('#sync-result')), 'its end', 60000);
    ok(true, 'and its confirmation');
    await slow(0);
});

await step('a selective sync done elsewhere refreshes the table', async () => {
    const rows = (await api('/umlo/users?status=active&limit=3')).json.data;
    const pick = rows[2];
    await sim('PATCH', `users/${encodeURIComponent(pick.id)}`, { name: 'AAC Elsewhere' });
    const r = await api('/umlo/sync', { method: 'POST', json: { users: [pick.id] } });
    is(r.status, 202, 'another admin syncs one user');
    await waitIdle();
    // the next poll (at once when the tab shows again) notices it
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await waitFor(async () => (await rowNames()).includes('AAC Elsewhere'), 'the new name');
    ok(true, 'the table shows the change without a reload');
});

await step('Sync Users while another runs attaches to it', async () => {
    await slow(150);
    await api('/umlo/sync', { method: 'POST' });
    // the page polls slowly when idle: click before it noticed
    await page.evaluate(() => { document.querySelector('#sync-btn').disabled = false; });
    await page.click('#sync-btn');
    await waitFor(async () => /already running/.test(await text('#sync-result')), 'the 409 note');
    ok(true, 'a 409 becomes "following the running sync"');
    await waitFor(async () => /Sync succeeded/.test(await text('#sync-result')), 'its end', 60000);
    ok(true, 'then its confirmation');
    await slow(0);
    await waitIdle();
});

await step('Cancel stops the running sync', async () => {
    await slow(250);
    await page.click('#sync-btn');
    await waitFor(async () => /Sync running/.test(await text('#sync-status')), 'running');
    await page.click('#cancel-btn');
    await waitFor(async () => /Sync cancelled/.test(await text('#sync-result')), 'cancelled', 30000);
    is((await status()).sync.state, 'cancelled', 'the server cancelled it');
    ok(/previous data is still shown/.test(await text('#sync-result')), 'the page says the data is unchanged');
    await slow(0);
});

await step('stale data is flagged', async () => {
    // the status as the server sends it, with a data_as_of three days old
    await page.route('**/umlo/status', async (route) => {
        const res = await route.fetch({ headers: { ...route.request().headers(), 'if-none-match': '' } });
        const doc = await res.json();
        doc.snapshot.data_as_of = new Date(Date.now() - 3 * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
        await route.fulfill({ response: res, json: doc });
    });
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await waitFor(async () => /data is 3 days old/.test(await text('#warnings')), 'the warning');
    ok(true, 'a warning says how old the data is');
    await page.unroute('**/umlo/status');
    await page.reload();
    await ready();
    ok(!/data is .* old/.test(await text('#warnings')), 'fresh data: no staleness warning',
       await text('#warnings'));
});

await step('history chart', async () => {
    if (!HAS_HISTORY) {
        // what a history location answers, built from real sync documents
        const last = (await status()).sync;
        const items = [0, 1, 2, 3].map((i) => ({ ...last, id: `${last.id}-${i}`,
            state: i === 2 ? 'failed' : 'succeeded', duration_ms: 1000 * (i + 1),
            started_at: last.started_at - 3600 * (4 - i) }));
        await page.route('**/umlo/history', (route) => route.fulfill({ json: { data: items } }));
    }
    await page.reload();
    await ready();
    await waitFor(async () => (await page.locator('#history-chart svg rect').count()) >= 2, 'bars');
    const bars = await page.locator('#history-chart svg rect').count();
    const rows = await page.locator('#history-table tbody tr').count();
    ok(bars >= 2 && bars <= rows, 'one bar per sync with a duration', `bars ${bars} rows ${rows}`);
    ok(/Durations of the last \d+ syncs/.test(await page.getAttribute('#history-chart svg', 'aria-label')),
       'the chart is labelled for screen readers');
    if (!HAS_HISTORY) {
        is(await page.locator('#history-chart rect.bar-failed').count(), 1, 'failures stand out');
        is(await text('#history-table tbody tr:first-child td:nth-child(4)'), '4.0 s', 'newest first, with its duration');
        await page.unroute('**/umlo/history');
    }
    await page.locator('section.history').screenshot({ path: join(OUT, '05-history.png') });
});

await step('filters in the URL restore the view', async () => {
    const q = '?status=suspended&sort=created&order=desc&limit=25';
    await page.goto(PAGE + q);
    await ready();
    const want = (await api('/umlo/users' + q)).json;
    await waitFor(async () => (await summaryTotal()) === want.meta.total, 'the restored total');
    is(await page.inputValue('#f-status'), 'suspended', 'the status select shows the filter');
    is(await page.inputValue('#f-limit'), '25', 'rows per page restored');
    is(await page.getAttribute('th[data-sort="created"]', 'aria-sort'), 'descending', 'the sort is restored');
    is(JSON.stringify(await rowNames()), JSON.stringify(want.data.map((u) => u.name || '(no name)')),
       'the rows are the API\'s rows for that URL');
    const href = new URL(await page.getAttribute('#csv-link', 'href'), PAGE);
    is(href.searchParams.get('status'), 'suspended', 'the CSV link follows the URL');
    await page.goBack();
    await page.goForward();
    await ready();
    is(await page.inputValue('#f-status'), 'suspended', 'back and forward keep it');
});

await step('keyboard: the controls are reachable and usable', async () => {
    await page.goto(PAGE);
    await ready();
    const reached = new Set();
    await page.locator('body').focus();
    for (let i = 0; i < 40; i++) {
        await page.keyboard.press('Tab');
        const id = await page.evaluate(() => {
            const a = document.activeElement;
            return a.id || (a.closest('th[data-sort]') && `sort-${a.closest('th').dataset.sort}`)
                || (a.classList.contains('row-select') && 'row-select') || a.tagName;
        });
        reached.add(id);
    }
    for (const id of ['sync-btn', 'csv-link', 'f-q', 'f-site', 'f-status', 'f-group', 'f-inactive',
                      'f-never', 'select-page', 'sort-name', 'sort-last_active', 'row-select']) {
        ok(reached.has(id), `Tab reaches ${id}`);
    }
    // sort by keyboard
    await page.focus('th[data-sort="email"] button');
    await page.keyboard.press('Enter');
    await waitFor(async () => new URL(page.url()).searchParams.get('sort') === 'email', 'sorted by email');
    const byEmail = (await api('/umlo/users?sort=email&limit=1')).json.data[0];
    await waitFor(async () => (await rowNames())[0] === (byEmail.name || '(no name)'), 'rows by email');
    ok(true, 'Enter on a column header sorts');
    // select a row with Space
    await page.locator('.row-select').first().focus();
    await page.keyboard.press('Space');
    is(await text('#sel-count'), '(1)', 'Space selects a row');
    const unlabeled = await page.evaluate(() => [...document.querySelectorAll('input, select, button')]
        .filter((e) => !e.labels?.length && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map((e) => e.id || e.outerHTML.slice(0, 60)));
    ok(unlabeled.length === 0, 'every control has a label', unlabeled.join('\n'));
    await shot('04-keyboard');
});

await step('polling: If-None-Match, 304 while nothing changes', async () => {
    await waitIdle();
    // coming back to the tab polls at once; nothing changed: 304
    for (let i = 0; i < 2; i++) {
        await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
        await page.waitForTimeout(300);
    }
    const sent = statusReqs.filter((r) => 'inm' in r);
    ok(sent.some((r) => r.inm && /^"[0-9a-f]{32}"$/.test(r.inm)), 'the page sends If-None-Match');
    ok(statusReqs.some((r) => r.code === 304), 'and gets 304 answers');
});

await step('nothing from elsewhere, no script errors', async () => {
    ok(foreign.length === 0, 'every request went to the same nginx', foreign.join('\n'));
    ok(pageErrors.length === 0, 'no script or CSP errors', pageErrors.join('\n'));
});

await browser.close();
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
