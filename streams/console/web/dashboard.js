// The antirelou dashboard: polls /dashboard/data every second and redraws. No library, no
// CDN (deployments may be offline); text is set with textContent only.
"use strict";
const COLORS = {forward: "#3867d6", already_answered: "#a5b1c2", flooder: "#eb3b5a",
  test_text: "#f7b731", invalid_number: "#8854d0", not_mobile: "#4b6584",
  country_not_allowed: "#20bf6b", blocked_prefix: "#fa8231", duplicate: "#d1d8e0"};
const SVGNS = "http://www.w3.org/2000/svg";
const eur = (micros) => (micros / 1e6).toLocaleString("en-GB",
  {minimumFractionDigits: 2, maximumFractionDigits: 2});
const iso = (ms) => ms == null ? "" : new Date(ms).toISOString().replace(".000", "");

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function tile(cid, key, label, value, cls) {
  const t = el("div", {class: "tile" + (cls ? " " + cls : "")});
  t.append(el("div", {class: "label"}, label));
  t.append(el("div", {class: "value", id: `c-${cid}-${key}`}, value));
  return t;
}
function colorOf(key) {
  const reason = key.includes(":") ? key.split(":")[1] : key;
  return COLORS[reason] || "#778ca3";
}
function chart(cid, minutes) {
  const w = 600, h = 120, n = minutes.length, bw = w / n;
  const totals = minutes.map(m => Object.values(m.texts).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h + 14}`);
  svg.setAttribute("width", w); svg.setAttribute("height", h + 14);
  svg.setAttribute("id", `c-${cid}-chart`);
  minutes.forEach((m, i) => {
    let y = h;
    for (const [key, count] of Object.entries(m.texts).sort()) {
      const bh = count / max * h;
      const r = document.createElementNS(SVGNS, "rect");
      r.setAttribute("x", i * bw + 1); r.setAttribute("width", bw - 2);
      r.setAttribute("y", y - bh); r.setAttribute("height", bh);
      r.setAttribute("fill", colorOf(key));
      const title = document.createElementNS(SVGNS, "title");
      title.textContent = `${iso(m.minute).slice(11, 16)} ${key}: ${count}`;
      r.append(title); svg.append(r); y -= bh;
    }
  });
  const label = document.createElementNS(SVGNS, "text");
  label.setAttribute("x", 2); label.setAttribute("y", h + 12); label.setAttribute("font-size", 10);
  label.textContent = `texts a minute, last 30 minutes (max ${max})`;
  svg.append(label);
  return svg;
}
function render(data) {
  const root = document.getElementById("campaigns");
  root.replaceChildren();
  for (const [cid, c] of Object.entries(data.campaigns)) {
    const box = el("section", {class: "campaign", id: `c-${cid}`});
    box.append(el("h2", {}, `${cid}`));
    const texts = Object.values(c.texts).reduce((a, b) => a + b, 0);
    const tiles = el("div", {class: "tiles"});
    tiles.append(tile(cid, "texts", "texts screened", texts));
    tiles.append(tile(cid, "forwarded", "forwarded", c.texts.forward || 0));
    tiles.append(tile(cid, "approved", "replies approved", c.approved));
    tiles.append(tile(cid, "sent", "replies sent", c.replies.sent || 0));
    tiles.append(tile(cid, "balance", "balance EUR", eur(c.balance_micros)));
    tiles.append(tile(cid, "reserve", "reserve EUR", eur(c.reserve_micros)));
    tiles.append(tile(cid, "spent", "spent EUR", eur(c.spent_micros)));
    tiles.append(tile(cid, "allowance", "left today EUR",
      c.allowance_left_micros == null ? "no pacing" : eur(c.allowance_left_micros)));
    tiles.append(tile(cid, "surge", "surge", c.surge ? "ON" : "off", c.surge ? "surge-on" : "surge-off"));
    tiles.append(tile(cid, "queued", "queue", c.queued));
    const expired = Object.values(c.expired).reduce((a, b) => a + b, 0);
    tiles.append(tile(cid, "deferred", "deferred / released / expired",
      `${c.deferred} / ${c.released} / ${expired}`));
    tiles.append(tile(cid, "overruns", "price overruns (EUR not charged)",
      `${c.overruns} (${eur(c.overrun_micros)})`, c.overruns ? "overrun" : ""));
    box.append(tiles);
    if (c.allowance_left_micros != null) {
      const left = c.allowance_left_micros, spentToday = c.spent_today_micros;
      const bar = el("div", {class: "bar", id: `c-${cid}-allowance-bar`,
        title: `today: EUR ${eur(spentToday)} spent of EUR ${eur(spentToday + left)} allowed`});
      const pct = Math.min(100, 100 * spentToday / Math.max(1, spentToday + left));
      bar.append(el("span", {style: `width:${pct}%`}));
      box.append(bar);
    }
    const p = c.policy;
    box.append(el("p", {class: "policy", id: `c-${cid}-policy`},
      `policy v${p.version} by ${c.policy_by}${c.policy_at ? " at " + iso(c.policy_at) : ""}: ` +
      Object.entries(p).filter(([k]) => k !== "version").map(([k, v]) => `${k}=${v}`).join(" ")));
    const row = el("div", {class: "row"});
    const left = el("div");
    left.append(chart(cid, c.minutes));
    const legend = el("div", {class: "legend"});
    for (const key of Object.keys(c.texts)) {
      const s = el("span"); const i = el("i", {style: `background:${colorOf(key)}`});
      s.append(i, document.createTextNode(`${key} ${c.texts[key]}`)); legend.append(s);
    }
    left.append(legend);
    row.append(left);
    const table = el("table", {id: `c-${cid}-last`});
    const head = el("tr");
    head.append(el("th", {}, "time (UTC)"), el("th", {}, "sender"),
      el("th", {}, "decision"), el("th", {}, "reason"));
    table.append(head);
    for (const d of c.last) {
      const tr = el("tr");
      tr.append(el("td", {}, iso(d.at).slice(0, 19)), el("td", {}, d.sender.slice(0, 14) + "…"),
        el("td", {}, d.decision), el("td", {}, d.reason || ""));
      table.append(tr);
    }
    row.append(table);
    box.append(row);
    root.append(box);
  }
  const lag = Object.entries(data.lag || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  document.getElementById("status").textContent =
    `${data.ready ? "live" : "reading the journal…"}: ${data.events} journal events, ` +
    `updated ${iso(data.now)}` + (lag ? `; waiting records: ${lag}` : "");
  document.body.dataset.events = data.events;
}
async function poll() {
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
  setTimeout(poll, 1000);
}
poll();
