// The antirelou console: polls /dashboard/data every second and redraws. No library, no
// CDN, no build step (deployments may be offline); text is set with textContent only.
// Per campaign: the money and how long it lasts, the flood (surge, what each surge decided,
// the queue by evidence, expiries by reason), the replies, a chart with a time axis, the
// policy with who changed what, the last decisions (pseudonyms only).
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const chosen = {};  // campaign id -> the chart's range ("hour" | "day" | "campaign")
let palette = {}, otherColor = "#778ca3";

const eur = (micros) => (micros / 1e6).toLocaleString("en-GB",
  {minimumFractionDigits: 2, maximumFractionDigits: 2});
const num = (n) => (n || 0).toLocaleString("en-GB");
const iso = (ms) => ms == null ? "" : new Date(ms).toISOString().replace(".000", "");
const day = (ms) => iso(ms).slice(0, 10);
const minute = (ms) => iso(ms).slice(0, 16).replace("T", " ");
const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);
function dur(ms) {
  if (ms == null) return "–";
  const m = Math.round(ms / 60000);
  if (m < 1) return `${Math.round(ms / 1000)} s`;
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.round(h / 24)} days`;
}
function colorOf(key) {
  return palette[key] || palette[key.split(":").pop()] || otherColor;
}
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
// A list of label/value rows; a value given as [text, id] gets that id (the tests read it).
function kv(rows) {
  const box = el("div", {class: "kv"});
  for (const [label, value, id, cls] of rows) {
    box.append(el("div", {class: "k"}, label));
    box.append(el("div", Object.assign({class: "v " + (cls || "")}, id ? {id} : {}), value));
  }
  return box;
}
function bar(id, percent, hot) {
  const b = el("div", {class: "bar" + (hot ? " hot" : ""), id});
  b.append(el("span", {style: `width:${Math.max(0, Math.min(100, percent))}%`}));
  return b;
}
function panel(title, ...children) {
  const p = el("div", {class: "panel"});
  p.append(el("h3", {}, title), ...children);
  return p;
}
function table(id, head, rows, numeric) {
  const t = el("table", id ? {id} : {});
  const tr = el("tr");
  head.forEach((h, i) => tr.append(el("th", numeric && numeric.includes(i) ? {class: "n"} : {}, h)));
  t.append(tr);
  for (const row of rows) {
    const r = el("tr", row.cls ? {class: row.cls} : {});
    row.cells.forEach((c, i) => {  // a cell is its text, or [text, id]
      const [text, id] = Array.isArray(c) ? c : [c, undefined];
      const attrs = Object.assign(numeric && numeric.includes(i) ? {class: "n"} : {}, id ? {id} : {});
      r.append(el("td", attrs, text));
    });
    t.append(r);
  }
  return t;
}

function moneyPanel(cid, c) {
  const m = c.console.money;
  const used = m.used_percent == null ? "–" : `${m.used_percent}%`;
  let runway;
  if (!m.pace_per_day_micros) runway = "nothing spent in the last 24 h";
  else if (m.lasts_past_end) runway = `EUR ${eur(m.pace_per_day_micros)} a day: lasts past the end (${day(m.ends_at - 1)})`;
  else runway = `EUR ${eur(m.pace_per_day_micros)} a day: lasts until ${day(m.lasts_until)}`;
  let allowance = "no pacing: the whole balance may go at once";
  if (m.allowance) {
    allowance = `EUR ${eur(m.allowance.now_micros)} now, then about EUR ${eur(m.allowance.per_day_micros)} a day until ${day(m.allowance.lasts_until - 1)}`;
  } else if (m.pacing) allowance = "the campaign has ended";
  const donations = m.credits.length ?
    `EUR ${eur(m.credited_micros)} (last: EUR ${eur(m.credits[0].amount_micros)} from ${m.credits[0].source}, ${day(m.credits[0].at)})`
    : `EUR ${eur(m.credited_micros)}`;
  return panel("Money",
    kv([["budget (with donations)", `EUR ${eur(m.budget_micros)}`, `c-${cid}-budget`, "big"],
        ["spent", `${eur(m.spent_micros)}`, `c-${cid}-spent`, "big"],
        ["used", used, `c-${cid}-used`]]),
    bar(`c-${cid}-used-bar`, m.used_percent || 0, (m.used_percent || 0) > 80),
    kv([["balance EUR", eur(c.balance_micros), `c-${cid}-balance`],
        ["reserve EUR", eur(c.reserve_micros), `c-${cid}-reserve`],
        ["donations", donations, `c-${cid}-credited`],
        ["price overruns (not charged)", `${c.overruns} (EUR ${eur(c.overrun_micros)})`, `c-${cid}-overruns`],
        ["at the current pace", runway, `c-${cid}-runway`],
        ["at the allowance", allowance, `c-${cid}-allowance`]]));
}

// What a surge decided, each row [label, value, id suffix].
function surgeRows(s) {
  const rows = [
    ["started", minute(s.started_at), "started"],
    ["ended", s.ended_at ? `${minute(s.ended_at)} (after ${dur(s.ended_at - s.started_at)})` : "going on", "ended"],
    ["its spike", `${num(s.first_texts)} first texts in a minute; before it: ${num(s.baseline_texts)} in ${s.baseline_minutes} min`, "spike"],
    ["spend bound", `EUR ${eur(s.spent_micros)} spent of EUR ${eur(s.cap_micros)}`, "spend"],
    ["held back", `${num(s.held_back)}` + (s.held_in_raid ? ` (${num(s.held_in_raid)} in a raid's minutes)` : ""), "held"],
    ["released", num(s.released), "released"],
    ["refused: a raid's words", num(s.raid_words), "raid-words"],
  ];
  const other = Object.entries(s.expired).filter(([r]) => r !== "raid_words");
  rows.push(["expired, other reasons", other.map(([r, n]) => `${r} ${num(n)}`).join(", ") || "none", "expired"]);
  return rows;
}

function floodPanel(cid, c) {
  const f = c.console.flood;
  const now = f.active && f.surges.length ? f.surges[0] : null;
  const evidence = `${num(f.this_minute.first_texts)} first texts this minute; the baseline ${f.this_minute.baseline_per_minute.toFixed(1)} a minute`;
  const rows = [["surge", now ? "ON" : "off", `c-${cid}-surge`, now ? "warn" : ""]];
  if (now) {
    rows.push(["since", minute(now.started_at), `c-${cid}-surge-since`]);
    rows.push(["ends", `at the earliest ${minute(f.ends_earliest)}, after ${c.policy.surge_quiet_minutes} quiet minutes`, `c-${cid}-surge-ends`]);
  }
  rows.push(["first texts", evidence]);
  const parts = [kv(rows)];
  const last = f.surges[0];
  if (last) {
    parts.push(el("h3", {}, now ? "What this surge decided so far" : "What the last surge decided"));
    parts.push(kv(surgeRows(last).map(([k, v, id]) => [k, v, `c-${cid}-surge-${id}`])));
  } else parts.push(el("p", {class: "muted"}, "No surge yet."));
  const q = f.queue;
  const held = Object.entries(q.held_back);
  parts.push(el("h3", {}, "Queue by evidence"));
  parts.push(table(`c-${cid}-queue`, ["waiting", "requests"], [
    {cells: ["the safety delay (judged at its end)", num(q.waiting_delay)]},
    ...held.map(([kind, n]) => ({cells: [`held back: ${kind}`, num(n)]})),
    {cells: [`total (at most ${num(q.limit)})`, [num(c.queued), `c-${cid}-queued`]]},
  ], [1]));
  const expired = Object.entries(c.expired).sort((a, b) => b[1] - a[1]);
  parts.push(el("h3", {}, "Expired, by reason"));
  parts.push(expired.length ? table(`c-${cid}-expired`, ["reason", "requests"],
    expired.map(([r, n]) => ({cells: [r, num(n)]})), [1])
    : el("p", {class: "muted", id: `c-${cid}-expired`}, "none"));
  return panel("Flood", ...parts);
}

function repliesPanel(cid, c) {
  const w = c.console.waits;
  const denied = Object.entries(c.decisions).filter(([k]) => k.startsWith("denied:"))
    .map(([k, n]) => `${k.slice(7)} ${num(n)}`).join(", ");
  return panel("Replies",
    kv([["texts screened", num(sum(c.texts)), `c-${cid}-texts`, "big"],
        ["forwarded to the campaign", num(c.texts.forward || 0), `c-${cid}-forwarded`],
        ["replies approved", num(c.approved), `c-${cid}-approved`],
        ["replies sent", num(c.replies.sent || 0), `c-${cid}-sent`, "big"],
        ["failed (refunded)", num(c.replies.failed || 0), `c-${cid}-failed`, c.replies.failed ? "warn" : ""],
        ["uncertain", num(c.replies.uncertain || 0), `c-${cid}-uncertain`, c.replies.uncertain ? "warn" : ""],
        ["wait, text to approval", w.of ? `p95 ${dur(w.p95_ms)}, median ${dur(w.median_ms)} (last ${num(w.of)})` : "–", `c-${cid}-p95`],
        ["refused at once", denied || "none", `c-${cid}-denied`]]));
}

function chartBox(cid, c) {
  const con = c.console, range = chosen[cid] || "hour", width = con.ranges[range];
  const box = el("div", {class: "chartbox"});
  const head = el("div", {class: "ranges"});
  head.append(el("strong", {}, `Texts and replies a ${{hour: "minute", day: "hour", campaign: "day"}[range]} `));
  for (const [name, label] of [["hour", "last hour"], ["day", "last day"], ["campaign", "campaign"]]) {
    const b = el("button", {id: `c-${cid}-range-${name}`, class: name === range ? "on" : ""}, label);
    b.addEventListener("click", () => { chosen[cid] = name; poll(true); });
    head.append(b);
  }
  box.append(head);
  const buckets = {};
  for (const b of con.series[range]) buckets[b.at] = b;
  const end = Math.floor(nowMs / width) * width;
  let start = end - width * ({hour: 59, day: 23}[range] ?? 0);
  if (range === "campaign") start = Math.max(Math.floor(con.starts_at / width) * width, end - 399 * width,
    Math.min(end, ...con.series.campaign.map(b => b.at)));
  const slots = [];
  for (let t = start; t <= end; t += width) slots.push(buckets[t] || {at: t});
  const keys = new Set();
  slots.forEach(b => Object.keys(b).forEach(k => { if (k !== "at" && !k.startsWith("reply:")) keys.add(k); }));
  const order = [...keys].sort();
  const totals = slots.map(b => order.reduce((a, k) => a + (b[k] || 0), 0));
  const top = Math.max(1, ...totals, ...slots.map(b => b["reply:sent"] || 0));
  const W = 1000, H = 200, L = 44, B = 26, T = 8, bw = (W - L) / slots.length;
  const chart = svg("svg", {viewBox: `0 0 ${W} ${H + B + T}`, id: `c-${cid}-chart`, role: "img",
    "aria-label": `texts per ${range === "hour" ? "minute" : range === "day" ? "hour" : "day"}`});
  for (const f of top >= 4 ? [0, 0.5, 1] : [0, 1]) {  // the y axis: 0, (half,) max
    const y = T + H - f * H;
    chart.append(svg("line", {x1: L, x2: W, y1: y, y2: y, stroke: "#ddd"}));
    chart.append(svg("text", {x: L - 4, y: y + 4, "font-size": 11, "text-anchor": "end", fill: "#555"},
      num(Math.round(f * top))));
  }
  slots.forEach((b, i) => {
    let y = T + H;
    for (const k of order) {
      const n = b[k] || 0;
      if (!n) continue;
      const h = n / top * H;
      const r = svg("rect", {x: L + i * bw + 0.5, width: Math.max(1, bw - 1), y: y - h, height: h, fill: colorOf(k)});
      r.append(svg("title", {}, `${minute(b.at)} ${k}: ${n}`));
      chart.append(r); y -= h;
    }
    const sent = b["reply:sent"] || 0;
    if (sent) {
      const dot = svg("circle", {cx: L + (i + 0.5) * bw, cy: T + H - sent / top * H, r: 3, fill: colorOf("reply:sent"), stroke: "#fff"});
      dot.append(svg("title", {}, `${minute(b.at)} replies sent: ${sent}`));
      chart.append(dot);
    }
  });
  const every = Math.max(1, Math.ceil(slots.length / 8));  // the time axis
  slots.forEach((b, i) => {
    if (i % every) return;
    const label = range === "campaign" ? day(b.at).slice(5) : iso(b.at).slice(11, 16);
    chart.append(svg("line", {x1: L + i * bw, x2: L + i * bw, y1: T + H, y2: T + H + 4, stroke: "#999"}));
    chart.append(svg("text", {x: L + i * bw, y: T + H + 17, "font-size": 11, fill: "#555"}, label));
  });
  box.append(chart);
  const legend = el("div", {class: "legend"});
  const totalsByKey = {};
  slots.forEach(b => Object.entries(b).forEach(([k, n]) => { if (k !== "at") totalsByKey[k] = (totalsByKey[k] || 0) + n; }));
  for (const k of [...order, "reply:sent"]) {
    if (!totalsByKey[k]) continue;
    const s = el("span"); s.append(el("i", {style: `background:${colorOf(k)}`}),
      document.createTextNode(`${k === "reply:sent" ? "replies sent (dots)" : k} ${num(totalsByKey[k])}`));
    legend.append(s);
  }
  if (!order.length) {
    chart.append(svg("text", {x: (L + W) / 2, y: T + H / 2, "text-anchor": "middle", fill: "#777",
      "font-size": 16, id: `c-${cid}-no-texts`}, "No texts in this range."));
  }
  box.append(legend);
  return box;
}

function policyBox(cid, c) {
  const rows = c.console.policy.map(r => ({
    cls: r.version ? "changed" : "",
    cells: [r.key, String(r.value), r.version ? `v${r.version} by ${r.by}, ${minute(r.at)} (was ${r.was})` : "campaign file"]}));
  const box = el("div");
  box.append(el("h3", {}, `Policy v${c.policy.version} (${c.policy_by}${c.policy_at ? ", " + minute(c.policy_at) : ""})`));
  box.append(table(`c-${cid}-policy`, ["key", "value", "set by"], rows));
  return box;
}

function lastBox(cid, c) {
  const box = el("div");
  box.append(el("h3", {}, "Last decisions"));
  if (!c.last.length) box.append(el("p", {class: "empty", id: `c-${cid}-last`}, "No decision yet."));
  else box.append(table(`c-${cid}-last`, ["time", "sender", "decision", "reason"], c.last.map(d => ({
    cells: [iso(d.at).slice(0, 19).replace("T", " "), d.sender.slice(0, 14) + "…", d.decision, d.reason || ""]}))));
  if (c.policy_history.length) {
    box.append(el("h3", {}, "Policy changes"));
    box.append(table(`c-${cid}-history`, ["version", "who", "when", "what"], c.policy_history.map(h => ({
      cells: [`v${h.version}`, h.by, minute(h.at), Object.entries(h.changes).map(([k, [a, b]]) => `${k} ${a} → ${b}`).join(", ") || "no value changed"]}))));
  }
  return box;
}

let nowMs = Date.now();
function render(data) {
  nowMs = data.now;
  const first = Object.values(data.campaigns)[0];
  if (first) { palette = first.console.colors; otherColor = first.console.other_color; }
  const root = document.getElementById("campaigns");
  root.replaceChildren();
  for (const [cid, c] of Object.entries(data.campaigns)) {
    const box = el("section", {class: "campaign", id: `c-${cid}`});
    const head = el("header");
    head.append(el("h2", {}, cid));
    head.append(el("span", {class: "pill " + (c.surge ? "surge-on" : "surge-off")}, c.surge ? "surge ON" : "no surge"));
    head.append(el("span", {class: "pill"}, `policy v${c.policy.version}`));
    head.append(el("span", {class: "pill"}, `reply EUR ${eur(c.reply_cost_micros)} (${c.reply_segments} ${c.reply_encoding} segment${c.reply_segments > 1 ? "s" : ""})`));
    head.append(el("span", {class: "pill"}, `${day(c.console.starts_at)} to ${day(c.console.ends_at - 1)}`));
    box.append(head);
    const panels = el("div", {class: "panels"});
    panels.append(moneyPanel(cid, c), floodPanel(cid, c), repliesPanel(cid, c));
    box.append(panels, chartBox(cid, c));
    const lower = el("div", {class: "lower"});
    lower.append(policyBox(cid, c), lastBox(cid, c));
    box.append(lower);
    root.append(box);
  }
  const lag = Object.entries(data.lag || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  document.getElementById("status").textContent =
    `${data.ready ? "live" : "reading the journal…"}: ${num(data.events)} journal events, ` +
    `updated ${iso(data.now)}` + (lag ? `; waiting records: ${lag}` : "");
  document.body.dataset.events = data.events;
}
let timer = null;
async function poll(once) {
  if (once && timer) clearTimeout(timer);
  try {
    const answer = await fetch("/dashboard/data", {credentials: "same-origin", cache: "no-store"});
    if (answer.status === 401 || answer.status === 403) { location.reload(); return; }
    const data = await answer.json();
    try { render(data); } catch (e) {
      document.getElementById("status").textContent = `cannot show the data: ${e}`;
    }
  } catch (e) {
    document.getElementById("status").textContent = `worker unreachable (${e}); retrying`;
  }
  timer = setTimeout(poll, 1000);
}
poll();
