// Renderers of the dashboard page: data in, DOM out, no page state.

import { $, el, num, toDate, isoDay, isoMin, ago, duration, contextShort,
         contextHint } from './util.js';

function listCell(items, max) {
    if (!items.length) return el('span', { class: 'muted', text: '–' });
    const shown = items.slice(0, max).join(', ');
    const more = items.length > max ? ` +${items.length - max}` : '';
    return el('span', { title: items.join(', ') }, shown + more);
}

// one row of the user table; selected: its checkbox is checked
export function userRow(u, selected) {
    const name = u.name || '(no name)';
    const box = el('input', { type: 'checkbox', class: 'row-select',
        'aria-label': `Select ${name}`, 'data-id': u.id });
    box.checked = selected;

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

    return el('tr', { 'data-id': u.id, class: selected ? 'selected' : null },
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

export function renderUtilisation(sites) {
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

// Key-expiry warnings, in whichever shape the server gives them.
export function keyWarnings(doc) {
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
    // the server's sentences may start in lower case
    return out.filter(Boolean).map((m) => m[0].toUpperCase() + m.slice(1));
}

export function historyItems(body) {
    if (Array.isArray(body)) return body;
    if (!body) return [];
    for (const k of ['data', 'syncs', 'history', 'items']) if (Array.isArray(body[k])) return body[k];
    return [];
}

export function renderHistory(items) {
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

export function renderChart(items) {
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
