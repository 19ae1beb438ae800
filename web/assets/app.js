// wattline dashboard: a small single-page app over the public HTTP API,
// with the user's key kept in this browser session only.
"use strict";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const statusLine = document.getElementById("status");
const signOut = document.getElementById("signout");

let me = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus();
}

/** Bumped by every navigation: a page that finishes loading after the
 *  user went elsewhere shows nothing. */
let generation = 0;

function showFor(token, ...nodes) {
  if (token === generation) show(...nodes);
}

function busy(text) { statusLine.textContent = text || ""; }

/** A call to the API: the parsed JSON answer, or an Error whose message
 *  says in words what went wrong. */
async function api(path, options = {}) {
  const key = sessionStorage.getItem("wattline-key");
  const headers = Object.assign({ Authorization: "Bearer " + key }, options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new Error("The appliance did not answer; check the connection.");
  }
  if (r.status === 204) return null;
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const message = body && body.error ? body.error.message : "status " + r.status;
    const err = new Error(message);
    err.status = r.status;
    err.details = body && body.error ? body.error.details : undefined;
    throw err;
  }
  return body;
}

function fmt(n, digits = 1) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function age(seconds) {
  if (seconds === undefined || seconds === null) return "no data";
  if (seconds < 120) return seconds + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " days ago";
}

// --- sign-in -------------------------------------------------------------

function signInPage(message) {
  nav.replaceChildren();
  signOut.hidden = true;
  const input = el("input", { id: "key", type: "password", autocomplete: "off", required: true, size: 40 });
  const error = el("p", { class: "error", role: "alert" }, message || "");
  const form = el("form", { on: { submit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem("wattline-key", input.value.trim());
    busy("Signing in…");
    try {
      const who = await api("/api/v1/me");
      if (who.role === "ingest") {
        sessionStorage.removeItem("wattline-key");
        error.textContent = "This is an ingest key: it can only write readings. Sign in with a tenant or admin key.";
        return;
      }
      me = who;
      if (location.hash === "#/") route(); else location.hash = "#/";
    } catch (err) {
      sessionStorage.removeItem("wattline-key");
      error.textContent = err.status === 401 ? "That key is unknown or revoked." : err.message;
    } finally { busy(); }
  } } },
    el("h1", {}, "Sign in"),
    el("label", { for: "key" }, "API key"),
    input, " ",
    el("button", { type: "submit" }, "Sign in"),
    error,
    el("p", { class: "muted" }, "The key stays in this browser tab and is forgotten when it closes."));
  show(form);
  input.focus();
}

// --- overview ------------------------------------------------------------

const columns = [
  ["name", "Building", (b) => b.name],
  ["sensor_count", "Sensors", (b) => b.sensor_count],
  ["today_kwh", "Today kWh", (b) => fmt(b.today_kwh)],
  ["month_kwh", "Month kWh", (b) => fmt(b.month_kwh)],
  ["month_kwh_per_m2", "Month kWh/m²", (b) => fmt(b.month_kwh_per_m2, 2)],
  ["open_alerts", "Alerts", (b) => b.open_alerts ? el("span", { class: "alert-on" }, b.open_alerts + " firing") : "none"],
  ["last_reading_age_s", "Last reading", (b) => age(b.last_reading_age_s)],
];

async function overviewPage(tenant) {
  const token = generation;
  busy("Loading buildings…");
  let data;
  try { data = await api("/api/v1/tenants/" + encodeURIComponent(tenant) + "/overview"); }
  catch (err) { showFor(token, el("p", { class: "error" }, "The buildings could not be loaded: " + err.message)); return; }
  finally { busy(); }
  let sortKey = "name", ascending = true;
  const table = el("table", { id: "buildings" });
  function render() {
    // Missing values (no floor area, no reading yet) last either way.
    const rows = [...data.buildings].sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    const head = el("tr", {}, columns.map(([key, label]) => el("th", { scope: "col", "aria-sort": key === sortKey ? (ascending ? "ascending" : "descending") : "none" },
      el("button", { class: "plain", type: "button", on: { click: () => { ascending = key === sortKey ? !ascending : true; sortKey = key; render(); } } }, label))));
    const body = rows.map((b) => el("tr", {}, columns.map(([key, , cell], i) =>
      el("td", {}, i === 0 ? el("a", { href: "#/building/" + encodeURIComponent(b.id) }, cell(b)) : cell(b)))));
    const t = data.total;
    const foot = el("tr", {}, el("td", {}, "Total (" + data.buildings.length + ")"), el("td", {}, t.sensor_count),
      el("td", {}, fmt(t.today_kwh)), el("td", {}, fmt(t.month_kwh)), el("td", {}, ""), el("td", {}, t.open_alerts || "none"), el("td", {}, ""));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, body), el("tfoot", {}, foot));
  }
  render();
  showFor(token, el("h1", {}, "Buildings of " + tenant),
    el("p", { class: "muted" }, "Today and this month in each building's local calendar."),
    el("div", { class: "table-wrap" }, table));
}

async function tenantsPage() {
  const token = generation;
  busy("Loading tenants…");
  try {
    const tenants = await api("/api/v1/tenants");
    showFor(token, el("h1", {}, "Tenants"), el("ul", {}, tenants.map((t) =>
      el("li", {}, el("a", { href: "#/tenant/" + encodeURIComponent(t.id) }, t.name + " (" + t.id + ")")))));
  } catch (err) {
    showFor(token, el("p", { class: "error" }, "The tenants could not be loaded: " + err.message));
  } finally { busy(); }
}

// --- building ------------------------------------------------------------

const DAY = 86400000;
const spans = { "15m": 1, hour: 7, day: 31, month: 366 };
/** The longest a bucket of each resolution can last (a day of 25 hours, a
 * month of 31 days): a longer step between two buckets is a gap. */
const longest = { "15m": 900000, hour: 3600000, day: 25 * 3600000, month: 31 * DAY + 3600000 };
/** Where the bucket starting at `ts` ends: the next local quarter, hour,
 * day or month (`ts` carries the building's offset, as /energy gives it). */
function bucketEnd(ts, resolution) {
  const t = Date.parse(ts);
  if (resolution === "15m") return t + 900000;
  if (resolution === "hour") return t + 3600000;
  const offset = ts.slice(19);
  const date = ts.slice(0, 10);
  const next = resolution === "day" ? addDays(date, 1) : addMonths(date, 1);
  // A clock change on the way moves the offset by an hour at most.
  return Date.parse(next + "T00:00:00" + offset);
}
function addMonths(date, n) {
  const d = new Date(date + "T00:00:00Z");
  d.setUTCMonth(d.getUTCMonth() + n);
  return d.toISOString().slice(0, 10);
}
/** Interior gaps of a series: [end of a bucket, start of the next] where
 * buckets are missing because no readings arrived. */
function gapsOf(points, resolution) {
  const gaps = [];
  for (let i = 1; i < points.length; i++) {
    const end = bucketEnd(points[i - 1].ts, resolution), next = Date.parse(points[i].ts);
    if (next - Date.parse(points[i - 1].ts) > longest[resolution] && next > end) gaps.push([end, next]);
  }
  return gaps;
}

/** Today's date (YYYY-MM-DD) in the time zone `tz`. */
function localToday(tz) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
}

/** The date `days` after the date `date` (both YYYY-MM-DD). */
function addDays(date, days) {
  return new Date(Date.parse(date) + days * DAY).toISOString().slice(0, 10);
}

/** Days from the date `a` to the date `b`. */
function daysBetween(a, b) { return Math.round((Date.parse(b) - Date.parse(a)) / DAY); }

/** A building's page; `params` may name `start`, `end` (local dates) and
 *  `resolution`, and the address keeps them current (a link to it shows
 *  the same chart). */
async function buildingPage(id, params) {
  const token = generation;
  busy("Loading the building…");
  let building;
  try { building = await api("/api/v1/buildings/" + encodeURIComponent(id)); }
  catch (err) { showFor(token, el("p", { class: "error" }, err.status === 404 ? "There is no building " + id + " for this key." : err.message)); busy(); return; }
  busy();
  const asked = params.get("resolution");
  let resolution = asked && Object.hasOwn(spans, asked) ? asked : "hour";
  // Dates are the building's local dates, as the API reads them.
  const today = localToday(building.timezone);
  const valid = (d) => /^\d{4}-\d{2}-\d{2}$/.test(d || "") && !isNaN(Date.parse(d));
  const start = el("input", { type: "date", id: "start", value: valid(params.get("start")) ? params.get("start") : addDays(today, 1 - spans[resolution]) });
  const end = el("input", { type: "date", id: "end", value: valid(params.get("end")) ? params.get("end") : addDays(today, 1) });
  const buttons = Object.keys(spans).map((r) => el("button", { type: "button", "data-resolution": r, "aria-pressed": String(r === resolution),
    on: { click: () => {
      resolution = r;
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.resolution === r)));
      start.value = addDays(end.value, -spans[r]);
      load();
    } } }, r));
  const canvas = el("canvas", { id: "chart", role: "img", "aria-label": "Energy chart" });
  const tip = el("div", { class: "tip", hidden: true });
  const cards = el("div", { class: "cards" });
  const note = el("p", { class: "muted", id: "chart-note" });
  const area = el("div", { class: "chart" }, canvas, tip);
  let points = [];
  let lastCurrency = null;

  async function load() {
    busy("Loading energy…");
    history.replaceState(null, "", "#/building/" + encodeURIComponent(id) + "?start=" + start.value + "&end=" + end.value + "&resolution=" + resolution);
    const q = (s, e) => "/api/v1/buildings/" + encodeURIComponent(id) + "/energy?resolution=" + resolution + "&start=" + s + "&end=" + e;
    try {
      const days = daysBetween(start.value, end.value);
      const [now, before] = await Promise.all([
        api(q(start.value, end.value)),
        api(q(addDays(start.value, -days), start.value)),
      ]);
      points = now.points;
      lastCurrency = now.currency;
      const total = points.reduce((s, p) => s + p.kwh, 0);
      // Like for like: the previous period only as far into it as now is
      // into this one (a period that runs until tomorrow is not complete).
      const cut = Date.now() - days * DAY;
      const previous = before.points.filter((p) => Date.parse(p.ts) < cut).reduce((s, p) => s + p.kwh, 0);
      const change = previous > 0 ? ((total - previous) / previous * 100) : null;
      // Peak demand: days and months carry it; a quarter's energy is a
      // quarter of its average power; hours cannot tell it.
      const peaks = resolution === "15m" ? points.map((p) => p.kwh * 4) : points.map((p) => p.peak_kw).filter((k) => k !== undefined);
      const peak = resolution !== "hour" && peaks.length ? Math.max(...peaks) : null;
      // Cost only when every bucket has one (a tariff covers it all).
      const cost = points.length && points.every((p) => p.cost !== undefined) ? points.reduce((s, p) => s + p.cost, 0) : null;
      const covered = points.filter((p) => p.coverage !== undefined);
      const lowest = covered.length ? Math.min(...covered.map((p) => p.coverage)) : null;
      cards.replaceChildren(
        el("div", { class: "card" }, "Total", el("b", { id: "total" }, fmt(total) + " kWh")),
        el("div", { class: "card" }, "Previous period", el("b", {}, fmt(previous) + " kWh")),
        el("div", { class: "card" }, "Change", el("b", {}, change === null ? "–" : (change >= 0 ? "+" : "") + fmt(change) + "%")),
        el("div", { class: "card" }, "Peak demand", el("b", { id: "peak" }, peak === null ? "–" : fmt(peak, 1) + " kW")),
        el("div", { class: "card" }, "Cost", el("b", { id: "cost" }, cost === null ? "–" : fmt(cost, 2) + " " + now.currency)),
        el("div", { class: "card" }, "Lowest coverage", el("b", { id: "coverage" }, lowest === null ? "–" : fmt(lowest * 100, 0) + "%")));
      const gaps = gapsOf(points, resolution);
      note.textContent = points.length + " " + resolution + " buckets in " + now.timezone + " local time." +
        (gaps.length ? " " + gaps.length + (gaps.length === 1 ? " gap" : " gaps") + " without readings, the longest " +
          duration(Math.max(...gaps.map(([a, b]) => b - a))) + "." : "");
      draw(canvas, points, resolution);
    } catch (err) {
      cards.replaceChildren(el("p", { class: "error" }, "The energy could not be loaded: " + err.message));
    } finally { busy(); }
  }
  canvas.addEventListener("mousemove", (e) => {
    if (!points.length) return;
    const r = canvas.getBoundingClientRect();
    const { x0, x1 } = domain(points, resolution);
    const left = 56; // the chart's y labels
    const t = x0 + (e.clientX - r.left - left) / (r.width - left) * (x1 - x0);
    const p = points.find((q) => Date.parse(q.ts) <= t && t < bucketEnd(q.ts, resolution));
    tip.hidden = false;
    tip.textContent = p ? p.ts + ": " + fmt(p.kwh, 2) + " kWh" +
      (p.peak_kw !== undefined ? " · peak " + fmt(p.peak_kw, 1) + " kW" : "") +
      (p.cost !== undefined ? " · " + fmt(p.cost, 2) + " " + (lastCurrency || "") : "") +
      (p.coverage !== undefined ? " · " + fmt(p.coverage * 100, 0) + "% of readings" : "") : "No readings";
    tip.style.left = Math.min(e.clientX - r.left + 12, r.width - 160) + "px";
    tip.style.top = "8px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  start.addEventListener("change", load);
  end.addEventListener("change", load);
  window.onresize = () => draw(canvas, points, resolution);

  showFor(token, el("h1", {}, building.name),
    el("p", { class: "muted" }, building.id + " · " + building.timezone + (building.floor_area_m2 ? " · " + fmt(building.floor_area_m2, 0) + " m²" : "")),
    el("div", { class: "controls" }, el("span", { role: "group", "aria-label": "Resolution" }, buttons),
      el("label", {}, "From ", start), el("label", {}, "to ", end)),
    cards, area, note,
    sensorsSection(id), alertsSection(id), reportSection(id, building.timezone));
  load();
}

/** Minutes in a duration such as "30m", "2h" or "1d". */
function minutes(text) {
  const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(text || "");
  if (!m) return "";
  return Number(m[1]) * { ms: 1 / 60000, s: 1 / 60, m: 1, h: 60, d: 1440, w: 10080 }[m[2]];
}

/** The building's alert rules (add, enable or disable, delete) and its
 *  recent alert events. */
function alertsSection(building) {
  const base = "/api/v1/buildings/" + encodeURIComponent(building);
  const rules = el("table", { id: "rules" });
  const events = el("table", { id: "events" });
  const message = el("p", { role: "alert" });
  function describe(r) {
    if (r.kind === "offline") return "offline for " + r.for + (r.sensor_id ? " (" + r.sensor_id + ")" : " (any sensor)");
    if (r.kind === "baseline") return r.window + " over the " + (r.weeks || 4) + "-week median by " + (r.percent || 0) + "%";
    return r.window + " over " + fmt(r.threshold_kwh, 2) + " kWh";
  }
  async function load() {
    try {
      const [list, evs] = await Promise.all([api(base + "/alerts"), api(base + "/alert-events?start=" + (Date.now() - 7 * DAY))]);
      rules.replaceChildren(
        el("thead", {}, el("tr", {}, ["Rule", "Recipients", "State", ""].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, list.map((r) => el("tr", {},
          el("td", {}, describe(r)),
          el("td", {}, [...r.emails, ...(r.webhook_url ? ["webhook"] : [])].join(", ") || "–"),
          el("td", {}, el("button", { type: "button", class: "plain", "data-rule-toggle": r.id, on: { click: () => change(r.id, "PATCH", { enabled: !r.enabled }) } }, r.enabled ? "on: disable" : "off: enable")),
          el("td", {}, el("button", { type: "button", class: "plain", "data-rule-edit": r.id, on: { click: () => edit(r) } }, "edit"), " ",
            el("button", { type: "button", class: "plain", "data-rule-delete": r.id, on: { click: () => { if (confirm("Delete this rule?")) change(r.id, "DELETE"); } } }, "delete"))))));
      events.replaceChildren(
        el("thead", {}, el("tr", {}, ["Event", "Window (UTC)", "Measured kWh", "Threshold kWh"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, evs.length ? evs.slice(-50).reverse().map((e) => el("tr", {},
          el("td", {}, e.kind + (e.sensor_id ? " (" + e.sensor_id + ")" : "")),
          el("td", {}, e.window_start.slice(0, 16).replace("T", " ") + " – " + e.window_end.slice(11, 16)),
          el("td", {}, fmt(e.measured_kwh, 2)), el("td", {}, fmt(e.threshold_kwh, 2))))
          : [el("tr", {}, el("td", { colspan: 4 }, "No alert events in the last 7 days."))]));
    } catch (err) { message.className = "error"; message.textContent = "The alerts could not be loaded: " + err.message; }
  }
  async function change(id, method, body) {
    busy("Saving…");
    try { await api("/api/v1/alerts/" + encodeURIComponent(id), { method, body: body ? JSON.stringify(body) : undefined }); message.textContent = ""; await load(); }
    catch (err) { message.className = "error"; message.textContent = err.message; }
    finally { busy(); }
  }
  const kind = el("select", { id: "rule-kind" }, ["threshold", "baseline", "offline"].map((k) => el("option", { value: k }, k)));
  const windowSel = el("select", { id: "rule-window" }, ["15m", "1h", "1d"].map((w) => el("option", { value: w }, w)));
  const value = el("input", { id: "rule-value", type: "number", step: "any", min: "0", size: 8, "aria-label": "Threshold kWh, percent over the median, or minutes silent" });
  const email = el("input", { id: "rule-email", size: 30, "aria-label": "Mail to, addresses separated by commas" });
  const hint = el("span", { class: "muted" }, "kWh");
  kind.addEventListener("change", () => { hint.textContent = { threshold: "kWh", baseline: "% over the median", offline: "minutes silent" }[kind.value]; });
  // The form adds a rule, or saves the one being edited (its kind stays).
  let editing = null;
  const submit = el("button", { type: "submit", id: "rule-submit" }, "Add rule");
  const cancel = el("button", { type: "button", class: "plain", hidden: true, on: { click: () => edit(null) } }, "cancel");
  function edit(r) {
    editing = r ? r.id : null;
    kind.disabled = !!r;
    submit.textContent = r ? "Save rule" : "Add rule";
    cancel.hidden = !r;
    if (!r) { value.value = ""; email.value = ""; return; }
    kind.value = r.kind;
    kind.dispatchEvent(new Event("change"));
    if (r.window) windowSel.value = r.window;
    value.value = r.kind === "threshold" ? r.threshold_kwh : r.kind === "baseline" ? (r.percent || 0) : minutes(r.for);
    email.value = r.emails.join(", ");
    value.focus();
  }
  const form = el("form", { class: "controls", on: { submit: async (e) => {
    e.preventDefault();
    const v = Number(value.value);
    const rule = { window: windowSel.value, emails: email.value.split(",").map((a) => a.trim()).filter((a) => a) };
    if (!editing) rule.kind = kind.value;
    if (kind.value === "threshold") rule.threshold_kwh = v;
    if (kind.value === "baseline") rule.percent = v;
    if (kind.value === "offline") { rule.for = Math.max(1, Math.round(v)) + "m"; delete rule.window; }
    busy("Saving the rule…");
    try {
      if (editing) await api("/api/v1/alerts/" + encodeURIComponent(editing), { method: "PATCH", body: JSON.stringify(rule) });
      else await api(base + "/alerts", { method: "POST", body: JSON.stringify(rule) });
      message.className = "muted"; message.textContent = editing ? "Rule saved." : "Rule added.";
      edit(null);
      await load();
    } catch (err) { message.className = "error"; message.textContent = err.message; }
    finally { busy(); }
  } } }, el("label", {}, "Kind ", kind), el("label", {}, "Window ", windowSel), el("label", {}, "Value ", value, " ", hint),
    el("label", {}, "Mail to ", email), submit, cancel);
  load();
  return el("section", {}, el("h2", {}, "Alerts"), el("div", { class: "table-wrap" }, rules), form, message,
    el("h3", {}, "Events of the last 7 days"), el("div", { class: "table-wrap" }, events));
}

/** The building's sensors: last reading, active state; add one, switch
 *  one on or off. */
function sensorsSection(building) {
  const table = el("table", { id: "sensors" });
  const message = el("p", { role: "alert" });
  async function load() {
    try {
      const sensors = await api("/api/v1/buildings/" + encodeURIComponent(building) + "/sensors");
      table.replaceChildren(
        el("thead", {}, el("tr", {}, ["Sensor", "Kind", "Unit", "Last reading (UTC)", "State"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, sensors.map((s) => el("tr", {},
          el("td", {}, s.id), el("td", {}, s.kind), el("td", {}, s.unit),
          el("td", {}, s.last_reading ? s.last_reading.slice(0, 19).replace("T", " ") : "never"),
          el("td", {}, el("button", { type: "button", class: "plain", "data-sensor": s.id, on: { click: () => toggle(s) } },
            s.is_active ? "active: deactivate" : "inactive: activate"))))));
    } catch (err) { message.className = "error"; message.textContent = "The sensors could not be loaded: " + err.message; }
  }
  async function toggle(s) {
    busy("Saving…");
    try { await api("/api/v1/sensors/" + encodeURIComponent(s.id), { method: "PATCH", body: JSON.stringify({ is_active: !s.is_active }) }); message.textContent = ""; await load(); }
    catch (err) { message.className = "error"; message.textContent = err.message; }
    finally { busy(); }
  }
  const newId = el("input", { id: "new-sensor", required: true, pattern: "[A-Za-z0-9_.:-]{1,64}", size: 20 });
  const form = el("form", { class: "controls", on: { submit: async (e) => {
    e.preventDefault();
    busy("Adding the sensor…");
    try {
      await api("/api/v1/buildings/" + encodeURIComponent(building) + "/sensors", { method: "POST", body: JSON.stringify({ id: newId.value.trim() }) });
      message.className = "muted"; message.textContent = "Sensor " + newId.value.trim() + " added."; newId.value = "";
      await load();
    } catch (err) { message.className = "error"; message.textContent = err.message; }
    finally { busy(); }
  } } }, el("label", {}, "New sensor id ", newId), el("button", { type: "submit" }, "Add sensor"));
  load();
  return el("section", {}, el("h2", {}, "Sensors"), el("div", { class: "table-wrap" }, table), form, message);
}

/** Ask for a report, follow its progress, download it. */
function reportSection(building, tz) {
  const today = localToday(tz);
  const from = el("input", { type: "date", id: "report-start", value: addDays(today, -28) });
  const to = el("input", { type: "date", id: "report-end", value: today });
  const format = el("select", { id: "report-format" }, ["pdf", "csv", "json"].map((f) => el("option", { value: f }, f.toUpperCase())));
  const progress = el("p", { id: "report-status", role: "status" });
  const form = el("form", { class: "controls", on: { submit: async (e) => {
    e.preventDefault();
    progress.className = "";
    progress.replaceChildren("Asking for the report…");
    try {
      let job = await api("/api/v1/reports", { method: "POST", body: JSON.stringify({ building_id: building, start: from.value, end: to.value, format: format.value }) });
      while (job.status === "queued" || job.status === "running") {
        progress.replaceChildren("Report " + job.status + "…");
        await new Promise((r) => setTimeout(r, 500));
        job = await api("/api/v1/reports/" + job.id);
      }
      if (job.status === "failed") throw new Error(job.error);
      const r = await fetch(job.result_url, { headers: { Authorization: "Bearer " + sessionStorage.getItem("wattline-key") } });
      if (!r.ok) throw new Error("the result could not be fetched (status " + r.status + ")");
      const url = URL.createObjectURL(await r.blob());
      const name = building + "-" + from.value + "-" + to.value + "." + format.value;
      progress.replaceChildren("Ready: ", el("a", { href: url, download: name, id: "report-download" }, "download " + name));
    } catch (err) { progress.className = "error"; progress.replaceChildren("The report failed: " + err.message); }
  } } }, el("label", {}, "From ", from), el("label", {}, "to ", to), el("label", {}, "Format ", format), el("button", { type: "submit" }, "Make report"));
  return el("section", {}, el("h2", {}, "Report"), form, progress);
}

// --- admin -----------------------------------------------------------------

async function adminPage() {
  const message = el("p", { role: "alert" });
  const tenants = el("table", { id: "tenants" });
  const keys = el("table", { id: "keys" });
  const health = el("div", { class: "cards", id: "health" });
  function fail(err) { message.className = "error"; message.textContent = err.message; }
  async function load() {
    busy("Loading…");
    try {
      const [ts, ks] = await Promise.all([api("/api/v1/tenants"), api("/api/v1/keys")]);
      tenants.replaceChildren(el("tbody", {}, ts.map((t) => el("tr", {}, el("td", {}, el("a", { href: "#/tenant/" + encodeURIComponent(t.id) }, t.id)), el("td", {}, t.name)))));
      keys.replaceChildren(
        el("thead", {}, el("tr", {}, ["Key", "Name", "Role", "Tenant", ""].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ks.map((k) => el("tr", {}, el("td", {}, k.id), el("td", {}, k.name), el("td", {}, k.role), el("td", {}, k.tenant_id || "–"),
          el("td", {}, k.id === me.key_id ? "this key" : el("button", { type: "button", class: "plain", "data-revoke": k.id, on: { click: async () => {
            if (!confirm("Revoke key " + k.id + "? Whoever uses it is locked out at once.")) return;
            try { await api("/api/v1/keys/" + encodeURIComponent(k.id), { method: "DELETE" }); await load(); } catch (err) { fail(err); }
          } } }, "revoke"))))));
      const metrics = await fetch("/metrics", { headers: { Authorization: "Bearer " + sessionStorage.getItem("wattline-key") } }).then((r) => r.text());
      const value = (name) => { const m = metrics.match(new RegExp("^" + name + " ([0-9.e+-]+)$", "m")); return m ? Number(m[1]) : null; };
      const ready = await fetch("/readyz").then((r) => r.ok).catch(() => false);
      const mib = (v) => v === null ? "–" : fmt(v / 1048576, 1) + " MiB";
      health.replaceChildren(
        el("div", { class: "card" }, "Ready", el("b", { id: "ready" }, ready ? "yes" : "no")),
        el("div", { class: "card" }, "Write-ahead", el("b", {}, mib(value("wattline_wal_bytes")))),
        el("div", { class: "card" }, "Rollup lag", el("b", {}, value("wattline_rollup_lag_seconds") === null ? "–" : fmt(value("wattline_rollup_lag_seconds"), 1) + " s")),
        el("div", { class: "card" }, "Chunk files", el("b", {}, value("wattline_chunks") ?? "–")),
        el("div", { class: "card" }, "Chunk data", el("b", {}, mib(value("wattline_chunk_bytes")))),
        el("div", { class: "card" }, "Alert outbox", el("b", {}, value("wattline_alert_outbox_depth") ?? "–")),
        el("div", { class: "card" }, "Reports queued", el("b", {}, value("wattline_report_queue_depth") ?? "–")));
    } catch (err) { fail(err); } finally { busy(); }
  }
  const tenantId = el("input", { id: "tenant-id", required: true, size: 16 });
  const tenantName = el("input", { id: "tenant-name", required: true, size: 24 });
  const tenantForm = el("form", { class: "controls", on: { submit: async (e) => {
    e.preventDefault();
    try { await api("/api/v1/tenants", { method: "POST", body: JSON.stringify({ id: tenantId.value.trim(), name: tenantName.value.trim() }) }); tenantId.value = tenantName.value = ""; await load(); }
    catch (err) { fail(err); }
  } } }, el("label", {}, "Id ", tenantId), el("label", {}, "Name ", tenantName), el("button", { type: "submit" }, "Add tenant"));
  const keyName = el("input", { id: "key-name", required: true, size: 16 });
  const keyRole = el("select", { id: "key-role" }, ["tenant", "ingest", "admin"].map((r) => el("option", { value: r }, r)));
  const keyTenant = el("input", { id: "key-tenant", size: 16 });
  const secret = el("p", { id: "new-secret" });
  const keyForm = el("form", { class: "controls", on: { submit: async (e) => {
    e.preventDefault();
    try {
      const k = await api("/api/v1/keys", { method: "POST", body: JSON.stringify({ name: keyName.value.trim(), role: keyRole.value, tenant_id: keyRole.value === "admin" ? null : keyTenant.value.trim() }) });
      secret.replaceChildren("New key (shown once, copy it now): ", el("code", {}, k.key));
      keyName.value = ""; await load();
    } catch (err) { fail(err); }
  } } }, el("label", {}, "Name ", keyName), el("label", {}, "Role ", keyRole), el("label", {}, "Tenant ", keyTenant), el("button", { type: "submit" }, "Create key"));
  show(el("h1", {}, "Administration"), message,
    el("h2", {}, "Health"), health,
    el("h2", {}, "Tenants"), el("div", { class: "table-wrap" }, tenants), tenantForm,
    el("h2", {}, "Keys"), el("div", { class: "table-wrap" }, keys), keyForm, secret);
  load();
}

// --- SQL console ---------------------------------------------------------

const TABLES = ["readings", "sensors", "buildings", "sensor_hourly", "sensor_gaps", "building_quarterly", "building_hourly", "building_daily", "building_monthly", "building_yearly", "alert_rules", "alert_events"];

/** Puts the editor's cursor on `line`, `column` (1-based, in characters,
 * as the server names an error's place) and returns that line with a caret
 * under the place. */
function pointAt(editor, line, column) {
  const lines = editor.value.split("\n");
  const text = lines[line - 1];
  if (text === undefined) return null;
  const chars = Array.from(text);
  const col = Math.min(Math.max(column, 1), chars.length + 1);
  // Offsets in a textarea count UTF-16 units; columns count characters.
  const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + chars.slice(0, col - 1).join("").length;
  editor.focus();
  editor.setSelectionRange(offset, offset + (chars[col - 1] || "").length);
  return text + "\n" + " ".repeat(col - 1) + "^";
}

function sqlPage() {
  const editor = el("textarea", { id: "sql", rows: 6, cols: 80, spellcheck: "false", "aria-label": "SQL query" },
    "SELECT building_id, round(sum(kwh), 1) AS kwh\nFROM building_daily\nGROUP BY building_id\nORDER BY kwh DESC");
  const out = el("div", { id: "sql-result", class: "table-wrap" });
  const tables = el("ul", { id: "tables" }, TABLES.map((t) => {
    const cols = el("span", { class: "muted" });
    return el("li", {}, el("button", { type: "button", class: "plain", on: { click: async () => {
      try {
        const r = await api("/api/v1/sql", { method: "POST", body: JSON.stringify({ sql: "SELECT * FROM " + t + " LIMIT 0" }) });
        cols.textContent = " " + r.columns.map((c) => c.name).join(", ");
      } catch (err) { cols.textContent = " " + err.message; }
    } } }, t), cols);
  }));
  async function run() {
    busy("Running the query…");
    try {
      const r = await api("/api/v1/sql", { method: "POST", body: JSON.stringify({ sql: editor.value }) });
      out.replaceChildren(el("table", {},
        el("thead", {}, el("tr", {}, r.columns.map((c) => el("th", { scope: "col" }, c.name)))),
        el("tbody", {}, r.rows.map((row) => el("tr", {}, row.map((v) => el("td", {}, v === null ? "NULL" : typeof v === "number" ? fmt(v, Number.isInteger(v) ? 0 : 3) : String(v))))))),
        el("p", { class: "muted" }, r.rows.length + " rows" + (r.truncated ? " (truncated)" : "")));
    } catch (err) {
      const at = err.details && err.details.line ? pointAt(editor, err.details.line, err.details.column) : null;
      out.replaceChildren(el("div", { class: "error", role: "alert" },
        el("p", {}, "The query failed" + (at ? " at line " + err.details.line + ", column " + err.details.column : "") + ": " + err.message),
        at ? el("pre", { id: "sql-error-at" }, at) : ""));
    } finally { busy(); }
  }
  async function download(kind) {
    busy("Preparing the download…");
    try {
      const r = await fetch("/api/v1/sql?format=" + kind, { method: "POST", headers: { Authorization: "Bearer " + sessionStorage.getItem("wattline-key"), "Content-Type": "application/json" }, body: JSON.stringify({ sql: editor.value }) });
      if (!r.ok) { const b = await r.json().catch(() => null); throw new Error(b && b.error ? b.error.message : "status " + r.status); }
      const a = el("a", { href: URL.createObjectURL(await r.blob()), download: "query." + kind });
      document.body.append(a); a.click(); a.remove();
    } catch (err) { out.replaceChildren(el("p", { class: "error", role: "alert" }, "The download failed: " + err.message)); }
    finally { busy(); }
  }
  editor.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
  show(el("h1", {}, "SQL"),
    el("div", { class: "sql" }, el("div", {}, editor,
      el("div", { class: "controls" }, el("button", { type: "button", id: "run", on: { click: run } }, "Run (Ctrl+Enter)"),
        el("button", { type: "button", class: "plain", on: { click: () => download("csv") } }, "Download CSV"),
        el("button", { type: "button", class: "plain", on: { click: () => download("parquet") } }, "Download Parquet"))),
      el("aside", {}, el("h2", {}, "Tables"), el("p", { class: "muted" }, "Click one for its columns."), tables)),
    out);
  editor.focus();
}

/** The chart's time axis: from the first bucket's start to the last one's end. */
function domain(points, resolution) {
  return { x0: Date.parse(points[0].ts), x1: bucketEnd(points[points.length - 1].ts, resolution) };
}

/** "45 minutes", "3 hours", "2 days": a gap's length in words. */
function duration(ms) {
  const [n, unit] = ms < 3600000 ? [ms / 60000, "minute"] : ms < 2 * DAY ? [ms / 3600000, "hour"] : [ms / DAY, "day"];
  const r = Math.round(n);
  return r + " " + unit + (r === 1 ? "" : "s");
}

/** Bars of `points` on `canvas` at their time (so missing buckets show as
 * gaps), scaled to its size, with a few labels. */
function draw(canvas, points, resolution) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue("--fg"), accent = css.getPropertyValue("--accent"), line = css.getPropertyValue("--line");
  g.clearRect(0, 0, w, h);
  g.font = "12px system-ui, sans-serif";
  if (!points.length) { g.fillStyle = fg; g.fillText("No readings in this period.", 12, 24); return; }
  const left = 56, bottom = h - 24, top = 8;
  const max = Math.max(...points.map((p) => p.kwh), 0) || 1;
  const y = (v) => bottom - (v / max) * (bottom - top);
  g.strokeStyle = line; g.fillStyle = fg;
  for (let k = 0; k <= 4; k++) {
    const v = max * k / 4;
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w, y(v)); g.stroke();
    g.fillText(fmt(v, v < 10 ? 1 : 0), 4, y(v) + 4);
  }
  const { x0, x1 } = domain(points, resolution);
  const x = (t) => left + (t - x0) / (x1 - x0) * (w - left);
  g.fillStyle = accent;
  points.forEach((p) => {
    const a = x(Date.parse(p.ts)), b = x(bucketEnd(p.ts, resolution));
    g.fillRect(a + (b - a) * 0.1, y(p.kwh), Math.max((b - a) * 0.8, 1), bottom - y(p.kwh));
  });
  g.fillStyle = fg;
  g.fillText(points[0].ts.slice(0, 16).replace("T", " "), left, h - 6);
  const last = points[points.length - 1].ts.slice(0, 16).replace("T", " ");
  g.fillText(last, w - g.measureText(last).width - 2, h - 6);
}

// --- routing -------------------------------------------------------------

async function route() {
  if (!sessionStorage.getItem("wattline-key")) { signInPage(); return; }
  if (!me) {
    try { me = await api("/api/v1/me"); }
    catch (err) { sessionStorage.removeItem("wattline-key"); signInPage(err.status === 401 ? "That key is unknown or revoked." : err.message); return; }
  }
  signOut.hidden = false;
  const home = me.role === "admin" ? "#/tenants" : "#/tenant/" + encodeURIComponent(me.tenant_id);
  nav.replaceChildren(el("a", { href: home }, "Buildings"), el("a", { href: "#/sql" }, "SQL"),
    me.role === "admin" ? el("a", { href: "#/admin" }, "Admin") : "",
    el("span", { class: "muted" }, me.role + (me.tenant_id ? " · " + me.tenant_id : "")));
  generation++;
  const [path, query] = (location.hash || "#/").split("?");
  let page, arg;
  try { [, page, arg] = path.split("/").map(decodeURIComponent); } catch { page = ""; }
  if (page === "building" && arg) return buildingPage(arg, new URLSearchParams(query || ""));
  if (page === "tenant" && arg) return overviewPage(arg);
  if (page === "tenants" && me.role === "admin") return tenantsPage();
  if (page === "sql") return sqlPage();
  if (page === "admin" && me.role === "admin") return adminPage();
  location.hash = home;
}

signOut.addEventListener("click", () => {
  sessionStorage.removeItem("wattline-key");
  me = null;
  location.hash = "#/";
  signInPage();
});
window.addEventListener("hashchange", route);
route();
