// The config page: dashboard, setup and actions, all through /ui/cnf (the same commands as the /cnf API).
// Forms are built from the configuration schema the appliance describes (get_config_schema); the server validates.
"use strict";

const CSRF = document.querySelector("meta[name=csrf]").content;
const COMMANDS = new Set(document.querySelector("meta[name=commands]").content.split(","));
const view = document.getElementById("view");
let timer = null;

// --- helpers -------------------------------------------------------------------------------------------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const kid of kids.flat(9)) if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const kid of kids) el.append(kid);
  return el;
}

async function api(cmd, params, body) {
  const q = new URLSearchParams(Object.assign({cmd}, params || {}));
  const opts = {headers: {"X-CSRF-Token": CSRF}, credentials: "same-origin", method: body === undefined ? "GET" : "POST"};
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch("/ui/cnf?" + q, opts);
  if (r.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  let data = null;
  try { data = await r.json(); } catch (e) { data = {error: "answer was not JSON (" + r.status + ")"}; }
  return {ok: r.ok, status: r.status, data};
}

const has = (cmd) => COMMANDS.has(cmd);
const A = (ma) => ma == null ? "–" : (ma / 1000).toFixed(1) + " A";
const kW = (w) => w == null ? "–" : (w / 1000).toFixed(2) + " kW";
const phases = (l) => !Array.isArray(l) ? A(l) : l.length === 3 && l[0] != null && l[0] === l[1] && l[1] === l[2] ? "3 × " + A(l[0]) : l.map(A).join(" / ");
const age = (ms) => ms == null ? "–" : ms < 1500 ? "now" : ms < 120000 ? Math.round(ms / 1000) + " s" : Math.round(ms / 60000) + " min";
const fmt = (v) => v == null ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v);
function kv(label, value, cls) { return h("div", {class: "kv " + (cls || "")}, h("span", {}, label), h("b", {}, value)); }
function card(title, ...kids) { return h("section", {class: "card"}, h("h2", {}, title), kids); }
function note(text, cls) { return h("p", {class: cls || "muted"}, text); }

// --- router --------------------------------------------------------------------------------------------------
let current = null;
function route() {
  const name = (location.hash || "#dash").slice(1);
  if (current === "setup" && name !== "setup" && dirty && !confirm("Leave Setup without saving your changes?")) {
    history.replaceState(null, "", "#setup");
    return;
  }
  current = name;
  dirty = false;
  clearTimeout(timer);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.id === "nav-" + name);
  view.textContent = "";
  ({dash: dashboard, setup: setup, actions: actions}[name] || dashboard)();
}
window.addEventListener("hashchange", route);

// --- dashboard -----------------------------------------------------------------------------------------------
let cfgCache = null;

async function dashboard() {
  // Fixed slots refreshed in place, so the variable form keeps focus and typed text across refreshes.
  const root = h("div", {id: "dash"}), problem = h("p", {class: "err"});
  root.slots = {site: h("div"), chart: h("div"), evses: h("div"), meters: h("div"), vars: h("div"), other: h("div")};
  root.append(problem, root.slots.site, root.slots.chart, root.slots.evses, root.slots.meters,
    card("Variables", root.slots.vars, varForm()), root.slots.other);
  view.append(root);
  let round = 0;
  async function refresh() {
    if (!root.isConnected) return;
    try {
      const [st, vars, cfg, hist] = await Promise.all([api("get_status"), api("get_cm_vars"),
        !cfgCache || round % 15 === 0 ? api("get_config") : null, round % 10 === 0 ? api("get_history") : null]);
      if (cfg && cfg.ok) cfgCache = cfg.data.config;
      if (hist && hist.ok) root.hist = hist.data;
      if (!root.isConnected) return;
      drawDashboard(root.slots, st.data, vars.data.vars || [], cfgCache || {}, root.hist);
      problem.textContent = "";
    } catch (e) {
      problem.textContent = "Cannot reach the appliance: " + e.message;
    }
    round++;
    timer = setTimeout(refresh, 2000);
  }
  refresh();
}

const REASONS = {fuse: "fuse (fixed current)", site_power: "power limit (fixed)", grid_operator: "grid operator (formula)",
  formula_error: "formula error: fallback", reserve: "reserve", meter_stale: "grid meter stale: fallback",
  overdraft: "overdraft cut", phase_skew: "phase balance", evse_max: "EVSE maximum", rule: "charging rule",
  override: "manual override", ramp: "ramping up", ev_minimum: "below EV minimum: paused", min_pause: "minimum pause",
  no_demand: "no demand", offline: "offline", monitor: "monitor mode"};
const reason = (r) => REASONS[r] || r;

function fill(slot, ...kids) { slot.textContent = ""; slot.append(...kids.flat().filter(Boolean)); }

function drawDashboard(slots, st, vars, cfg, hist) {
  const open = new Set([...slots.other.querySelectorAll("details[open]")].map((d) => d.id));
  const site = st.site || {}, cs = cfg.site || {}, readings = st.readings || {};
  const set = st.settings || {}, pw = set["site.max_power_w"] || {}, pc = set["site.max_current_ma"] || {};
  const setting = (e, unit) => e.expr == null ? "–" : e.source === "formula" ? (e.error ? "error: " + e.error : unit(e.value)) + " = " + e.expr : unit(e.value);
  const sum = (l) => Array.isArray(l) && l.some((v) => v) ? l : null;
  fill(slots.site, card("Site",
    h("div", {class: "grid"},
      kv("Connection limit per phase", site.limit_ma != null ? phases(site.limit_ma) : setting(pc, A), "big site-limit"),
      kv("Bound by", site.limit_reason ? reason(site.limit_reason) : pw.source || "–", "site-reason"),
      kv("Power limit", setting(pw, kW), "limit-power"),
      kv("Current limit", setting(pc, A)),
      kv("Reserve", site.reserve_ma ? phases(site.reserve_ma) : cs.reserve_w != null ? cs.reserve_w + " W" : "–"),
      kv("Draw per phase", site.grid_ma ? phases(site.grid_ma) : "no grid meter reading"),
      kv("Available for EVs", site.available_ma != null ? phases(site.available_ma) : "–", "site-available"),
      kv("Given to EVs", site.allocated_ma != null ? phases(site.allocated_ma) : "–"),
      kv("Overdraft", (sum(site.overdraft_ma) ? phases(site.overdraft_ma) : "none") + (site.max_overdraft_ma ? " · max " + A(site.max_overdraft_ma) : "")
        + (sum(site.overdraft_cut_ma) ? " · cut " + phases(site.overdraft_cut_ma) : ""), "overdraft"),
      kv("Mode", site.mode || cs.mode || "–")),
    (site.errors || []).map((e) => note(e, "warn"))));
  fill(slots.chart, card("Power, last hours", chart(hist)));
  fill(slots.evses, evseTiles(cfg, st, readings), st.ocpp ? ocppCard(st.ocpp) : null);
  const meters = cfg.meters || [];
  fill(slots.meters, card("Meters", meters.length ? h("table", {},
    h("tr", {}, h("th", {}, "Meter"), h("th", {}, "Role"), h("th", {}, "Power"), h("th", {}, "Current L1/L2/L3"), h("th", {}, "Age")),
    meters.map((m) => {
      const r = readings[m.dev_id] || {};
      return h("tr", {class: r.stale ? "stale" : "", "data-meter": m.dev_id}, h("td", {}, m.dev_id + (m.name ? " " + m.name : "")), h("td", {}, m.role),
        h("td", {}, kW(r.power_w)), h("td", {}, phases([r.current_l1_ma, r.current_l2_ma, r.current_l3_ma])),
        h("td", {}, r.age_ms == null ? "no reading" : age(r.age_ms) + (r.stale ? " (stale)" : "")));
    })) : note("No meters configured.")), otherReadings(cfg, readings));
  fill(slots.vars, varTable(vars));
  const known = new Set(["version", "uptime_s", "tick_count", "tick_cpu_ms", "admin_password_set", "site", "evses", "readings", "settings", "ocpp"]);
  const other = Object.keys(st).filter((k) => !known.has(k));
  fill(slots.other, other.length ? card("More status", other.map((k) => h("details", {id: "st-" + k, open: open.has("st-" + k)},
      h("summary", {}, title(k)), h("pre", {}, JSON.stringify(st[k], null, 1))))) : null);
  document.getElementById("clock").textContent = "up " + Math.round(st.uptime_s / 60) + " min · tick " + st.tick_cpu_ms + " ms CPU";
}

function otherReadings(cfg, readings) {
  // Switching inputs (IN1 …) and any other device that publishes readings without being an EVSE or a meter.
  const known = new Set([...(cfg.evses || []), ...(cfg.meters || [])].map((d) => d.dev_id));
  const ids = Object.keys(readings).filter((id) => !known.has(id)).sort();
  if (!ids.length) return null;
  return card("Inputs and other devices", h("table", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "Values"), h("th", {}, "Age")),
    ids.map((id) => {
      const r = readings[id];
      const values = Object.entries(r).filter(([k]) => k !== "age_ms" && k !== "stale").map(([k, v]) => k + " " + fmt(v)).join(" · ");
      return h("tr", {class: r.stale ? "stale" : "", "data-reading": id}, h("td", {}, id), h("td", {}, values), h("td", {}, age(r.age_ms)));
    })));
}

function ocppCard(o) {
  const seen = o.seen_unconfigured || [];
  return card("OCPP server",
    h("div", {class: "grid"}, kv("Server", o.running ? "listening on port " + o.port : "not running"),
      kv("Connected boxes", (o.connected || []).join(", ") || "none", "ocpp-connected")),
    o.error ? note(o.error, "warn") : null,
    seen.length ? h("div", {id: "ocpp-seen"}, note("Boxes that tried to connect but are not configured (add them under Setup with this ChargeBox ID):"),
      h("ul", {}, seen.map((b) => h("li", {}, h("code", {}, b.chargebox_id), " · " + (b.count || 1) + " tries" + (b.peer ? " from " + b.peer : "") + " ",
        h("button", {type: "button", class: "add", onclick: () => { pendingBox = b.chargebox_id; location.hash = "#setup"; }}, "Add as EVSE"))))) : null,
    Object.keys(o.events || {}).length ? h("details", {}, h("summary", {}, "Recent OCPP events"),
      Object.entries(o.events).map(([box, ev]) => h("div", {}, h("b", {}, box), h("pre", {}, ev.join("\n"))))) : null);
}

function backendText(l) {
  if (l.state) return l.state;
  const queued = l.queued_messages ? ", " + l.queued_messages + " queued" : "";
  return (l.connected ? (l.booted ? "connected" : "connected, boot pending") : "unreachable") + queued
    + (!l.connected && l.last_error ? " · " + l.last_error : "");
}

const CAR_STATES = {Preparing: "connected", Charging: "charging", SuspendedEV: "connected (car paused)",
  SuspendedEVSE: "connected (paused by limit)", Finishing: "finishing", Available: "none", Unavailable: "–", Faulted: "–", Offline: "–"};

function evseTiles(cfg, st, readings) {
  const evses = cfg.evses || [];
  const byId = {};
  for (const e of Array.isArray(st.evses) ? st.evses : []) byId[e.dev_id] = e;
  const gw = st.gateway || {};
  return card("EVSEs", evses.length ? h("div", {class: "tiles"}, evses.map((e) => {
    const s = byId[e.dev_id] || {}, dec = s.decision || {}, oc = s.ocpp || {}, tx = oc.transaction;
    const r = Object.assign({}, readings[e.dev_id] || {}, s.reading || {});
    const status = r.state || oc.status || r.status;
    if (r.session_energy_wh == null && tx && tx.meter_start_wh != null && r.energy_wh != null) r.session_energy_wh = r.energy_wh - tx.meter_start_wh;
    const online = r.online != null ? r.online : s.connected != null ? s.connected : dec.reason === "offline" ? false : null;
    const amps = [r.current_l1_ma, r.current_l2_ma, r.current_l3_ma];
    const charging = status === "Charging" || (r.power_w || 0) > 0 || amps.some((a) => (a || 0) > 0);
    const car = CAR_STATES[status] || (charging ? "charging" : r.wants ? "connected" : r.wants === false ? "none" : "–");
    const state = online === false ? (status && status !== "Offline" ? status + " (offline)" : "offline") : status || (online ? "online" : "unknown");
    const cls = online === false || state === "unknown" ? "off" : charging ? "charging" : r.wants || /connected/.test(car) ? "connected" : "idle";
    const link = gw[e.dev_id] || s.gateway || (e.gateway && e.gateway.url ? {state: "configured"} : null);
    const ov = s.override;
    return h("article", {class: "tile " + cls, id: "evse-" + e.dev_id, "data-state": state},
      h("h3", {}, e.dev_id, " ", h("small", {}, e.name || e.address)),
      kv("State", state, "state"),
      kv("Car", car, "car"),
      kv("Current", phases(amps)),
      kv("Power", kW(r.power_w)),
      kv("Limit", (dec.current_ma != null ? A(dec.current_ma) : "–") + (dec.reason ? " · " + reason(dec.reason) : ""), "limit"),
      kv("Energy", r.session_energy_wh != null ? (r.session_energy_wh / 1000).toFixed(2) + " kWh (session)" : r.energy_wh != null ? (r.energy_wh / 1000).toFixed(1) + " kWh (meter)" : "–"),
      ov ? kv("Override", (ov.charging === false ? "paused" : "") + (ov.current_ma != null ? " " + A(ov.current_ma) : "") + (ov.rules === false ? " rules off" : ""), "override") : null,
      link ? kv("Backend", backendText(link), "backend") : null,
      h("p", {class: "muted"}, e.type + " · " + e.address + " #" + e.id + (e.mode === "monitor" ? " · monitor" : "")
        + (s.reading_age_ms != null ? " · " + age(s.reading_age_ms) : "")));
  })) : note("No EVSEs configured yet: add one under Setup."));
}

function varTable(vars) {
  if (!vars.length) return note("No variables yet.");
  return h("table", {id: "vars"}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Expression"), h("th", {}, "Value")),
    vars.map((v) => h("tr", {"data-var": v.name}, h("td", {}, v.name), h("td", {}, h("code", {}, fmt(v.expr))),
      h("td", {class: v.error ? "err" : ""}, v.error || fmt(v.val)))));
}

function varForm() {
  const name = h("input", {name: "var-name", placeholder: "name, e.g. AVAIL", size: 10, required: true});
  const val = h("input", {name: "var-val", placeholder: "number or formula", size: 16, required: true});
  const msg = h("span", {class: "msg"});
  return h("form", {class: "inline", id: "var-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const r = await api("set_cm_vars", {name: name.value.trim(), val: val.value.trim()});
    msg.textContent = r.ok ? "set" : r.data.error;
    msg.className = r.ok ? "msg ok" : "msg err";
  }}, name, val, h("button", {type: "submit"}, "Set variable"), msg);
}

function chart(hist) {
  const pts = (hist && hist.points) || [];
  if (pts.filter((p) => p[1] != null || p[2] != null).length < 2) return note("No power readings yet: the chart fills as meters and EVSEs report.");
  const W = Math.max(280, Math.min(1060, view.clientWidth - 36)), H = W < 500 ? 160 : 220, L = 58, B = 20;  // real pixels: text stays legible
  const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 60);
  let max = 1000;
  for (const p of pts) max = Math.max(max, p[1] || 0, p[2] || 0);
  max = Math.ceil(max / 1000) * 1000;
  const x = (t) => L + (W - L - 4) * (t - t0) / (t1 - t0), y = (w) => 4 + (H - B - 4) * (1 - w / max);
  const line = (i, cls) => {
    let d = "", pen = "M";
    for (const p of pts) { if (p[i] == null) { pen = "M"; continue; } d += pen + x(p[0]).toFixed(1) + "," + y(p[i]).toFixed(1); pen = "L"; }
    return s("path", {d, class: cls});
  };
  const svg = s("svg", {viewBox: "0 0 " + W + " " + H, class: "chart", role: "img"});
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", {x1: L, x2: W, y1: y(max * f), y2: y(max * f), class: "axis"}),
      s("text", {x: L - 4, y: y(max * f) + 4, "text-anchor": "end"}, (max * f / 1000).toFixed(1) + " kW"));
  }
  const tl = (t) => new Date(t * 1000).toTimeString().slice(0, 5);
  svg.append(s("text", {x: L, y: H - 4}, tl(t0)), s("text", {x: (L + W) / 2, y: H - 4, "text-anchor": "middle"}, tl((t0 + t1) / 2)),
    s("text", {x: W, y: H - 4, "text-anchor": "end"}, tl(t1)),
    line(1, "site"), line(2, "ev"));
  return h("div", {}, svg, h("p", {class: "legend"}, h("i", {class: "site"}), "site ", h("i", {class: "ev"}), "EVs"));
}

// --- setup ---------------------------------------------------------------------------------------------------
const TITLES = {site: "Site", evses: "EVSEs", meters: "Meters", ocpp: "OCPP", http: "HTTP", smgw: "Smart Meter Gateway",
  inputs: "Inputs", p14a: "§14a dimming", gateway: "OCPP gateway to the backend", server: "Server", rules: "Charging rules"};
const ADD = {evses: "EVSE", meters: "meter", rules: "rule", inputs: "input", certificates: "certificate"};
const UNITS = {w: "W", ma: "mA", v: "V", ms: "ms", s: "s", wh: "Wh"};
const WORDS = {cls: "CLS", evse: "EVSE", id: "ID", tls: "TLS", url: "URL", ocpp: "OCPP", smgw: "SMGW", ca: "CA", l1: "L1", ip: "IP"};
function title(k) {
  if (TITLES[k]) return TITLES[k];
  if (/_ma_per_s$/.test(k)) return title(k.replace(/_ma_per_s$/, "")) + " (mA/s)";
  const parts = k.split("_"), unit = parts.length > 1 && UNITS[parts[parts.length - 1]] ? UNITS[parts.pop()] : null;
  const text = parts.map((w) => WORDS[w] || w).join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1) + (unit ? " (" + unit + ")" : "");
}
let doc = null, schema = null, dirty = false, badJson = new Set(), pendingBox = null;
const openItems = new WeakSet();

async function setup() {
  const [sc, cf] = await Promise.all([api("get_config_schema"), api("get_config")]);
  schema = sc.data.schema;
  doc = cf.data.config;
  dirty = false;
  badJson = new Set();
  if (pendingBox) {  // "Add as EVSE" on the dashboard: a box that knocked at the OCPP server
    const t = schema.fields.find((f) => f.key === "evses").type;
    const fresh = Object.assign(defaultsOf(t.item), {dev_id: nextId("evses", doc.evses, "dev_id"), type: "ocpp16", address: pendingBox});
    doc.evses.push(fresh);
    openItems.add(fresh);
    pendingBox = null;
    dirty = true;
    drawSetup([fresh.dev_id + " added for box " + fresh.address + ": check it and save.", ""]);
    return;
  }
  drawSetup();
}

function drawSetup(msg) {
  view.textContent = "";
  const form = h("form", {id: "setup", novalidate: true, onsubmit: (ev) => { ev.preventDefault(); save(); }});
  for (const f of schema.fields) {
    if (f.key === "version") continue;
    const sec = h("section", {class: "card", id: "sec-" + f.key}, h("h2", {}, title(f.key)), f.doc ? note(f.doc) : null);
    sec.append(editor(f.type, doc[f.key], f.key, (v) => { doc[f.key] = v; }, f));
    form.append(sec);
  }
  form.append(h("div", {class: "savebar"}, h("span", {id: "save-msg", class: "msg " + (msg ? msg[1] : "")}, msg ? msg[0] : ""),
    h("button", {type: "button", onclick: setup}, "Discard changes"), h("button", {type: "submit", id: "save"}, "Save")));
  const jump = (id, text) => h("button", {type: "button", class: "chip", onclick: () => document.getElementById(id).scrollIntoView()}, text);
  view.append(h("nav", {class: "sections"}, schema.fields.filter((f) => f.key !== "version").map((f) => jump("sec-" + f.key, title(f.key))),
    has("get_certs") ? jump("sec-certs", "Certificates") : null, jump("sec-password", "Admin password")), form);
  if (has("get_certs")) view.append(certificates());
  view.append(passwordCard());
}

function touch() { dirty = true; const m = document.getElementById("save-msg"); m.textContent = "unsaved changes"; m.className = "msg"; }

function editor(t, value, path, set, field) {
  if (t.t === "object" && t.fields.length) {
    const box = h("div", {class: "fields"});
    if (value == null || typeof value !== "object") { value = {}; set(value); }
    for (const f of t.fields) {
      const sub = path + "." + f.key;
      const inner = f.type.t === "nullable" ? f.type.inner : f.type;
      if ((inner.t === "object" && inner.fields.length) || (inner.t === "list" && inner.item.t === "object" && inner.item.fields.length)) {
        box.append(h("fieldset", {}, h("legend", {}, title(f.key)), editor(f.type, value[f.key], sub, (v) => { value[f.key] = v; }, f)));
      } else {
        box.append(row(f, sub, editor(f.type, value[f.key], sub, (v) => { value[f.key] = v; }, f)));
      }
    }
    return box;
  }
  if (t.t === "list" && t.item.t === "object" && t.item.fields.length) return listEditor(t, value || [], path, set);
  if (t.t === "nullable" && t.inner.t === "object" && t.inner.fields.length) {
    // An optional group (a rule's time window): a switch, and the group's fields while it is on.
    const on = value != null;
    return h("div", {}, h("label", {class: "switch"}, h("input", {type: "checkbox", "data-path": path, checked: on, onchange: (ev) => {
      set(ev.target.checked ? defaultsOf(t.inner) : null); touch(); redraw();
    }}), " use"), h("div", {class: "ferr", "data-err": path}), on ? editor(t.inner, value, path, set) : null);
  }
  if (t.t === "nullable") return input(t.inner, value, path, set, field, true);
  return input(t, value, path, set, field, false);
}

function row(f, path, control) {
  const id = "f-" + path.replace(/[^A-Za-z0-9]/g, "_");
  (control.classList.contains("suggest") ? control.firstChild : control).id = id;
  return h("div", {class: "row"}, h("label", {for: id, title: path}, title(f.key), f.required ? " *" : ""), control,
    h("small", {class: "hint"}, f.doc), h("div", {class: "ferr", "data-err": path}));
}

function input(t, value, path, set, field, nullable) {
  const secret = field && field.secret;
  if (t.t === "enum") {
    return h("select", {"data-path": path, onchange: (ev) => { set(ev.target.value); touch(); }},
      t.choices.map((c) => h("option", {value: c, selected: c === value}, c)));
  }
  if (t.t === "bool") return h("input", {type: "checkbox", "data-path": path, checked: value, onchange: (ev) => { set(ev.target.checked); touch(); }});
  if (t.t === "number" || t.t === "formula" || t.t === "string") {
    const numeric = t.t !== "string", listId = t.suggest ? "dl-" + path.replace(/[^A-Za-z0-9]/g, "_") : null;
    const el = h("input", {type: secret ? "password" : "text", "data-path": path, list: listId, autocomplete: secret ? "new-password" : "off",
      inputmode: t.t === "number" ? "decimal" : null, value: value == null ? "" : String(value),
      placeholder: nullable ? "not set" : t.t === "formula" ? "number or formula" : null,
      oninput: (ev) => {
        const raw = ev.target.value.trim();
        set(raw === "" && nullable ? null : numeric && raw !== "" && !isNaN(Number(raw)) ? Number(raw) : ev.target.value);
        touch();
      }});
    return listId ? h("span", {class: "suggest"}, el, h("datalist", {id: listId}, t.suggest.map((v) => h("option", {value: v})))) : el;
  }
  // Lists of values, rule lists and types this page does not know: JSON, checked by the server like the rest.
  const el = h("textarea", {"data-path": path, rows: 3, spellcheck: "false", oninput: (ev) => {
    try { set(JSON.parse(ev.target.value || "null")); badJson.delete(path); ev.target.classList.remove("bad"); }
    catch (e) { badJson.add(path); ev.target.classList.add("bad"); }
    touch();
  }}, JSON.stringify(value === undefined ? null : value, null, 1));
  return el;
}

function listEditor(t, items, path, set) {
  set(items);
  const box = h("div", {class: "list", "data-list": path});
  items.forEach((item, i) => {
    const sub = path + "[" + i + "]";
    const label = (item.dev_id || "#" + (i + 1)) + [item.name, item.type, item.address, item.role,
      item.action && item.action + (item.condition ? " if " + item.condition : "")].filter(Boolean).map((x) => " · " + x).join("");
    box.append(h("details", {class: "item", open: openItems.has(item), ontoggle: (ev) => { if (ev.target.open) openItems.add(item); else openItems.delete(item); }, id: "item-" + sub.replace(/[^A-Za-z0-9]/g, "_")},
      h("summary", {}, label, h("div", {class: "ferr", "data-err": sub})),
      editor(t.item, item, sub, () => {}),
      h("div", {class: "itembar"}, i > 0 ? h("button", {type: "button", class: "add", onclick: () => { items.splice(i - 1, 0, items.splice(i, 1)[0]); touch(); redraw(); }}, "Move up") : null,
        h("button", {type: "button", class: "danger", onclick: () => { items.splice(i, 1); touch(); redraw(); }}, "Remove " + (item.dev_id || "entry")))));
  });
  box.append(h("button", {type: "button", class: "add", "data-add": path, onclick: () => {
    const fresh = defaultsOf(t.item);
    if (t.unique) fresh[t.unique] = nextId(path, items, t.unique);
    items.push(fresh);
    openItems.add(fresh);
    touch();
    redraw();
  }}, "Add " + (ADD[path.split(".").pop()] || "entry")));
  return box;
}

function defaultsOf(t) {
  const out = {};
  for (const f of t.fields) if (f.default !== null || !f.required) out[f.key] = f.default === null ? null : JSON.parse(JSON.stringify(f.default));
  return out;
}

function nextId(path, items, key) {
  const prefix = /evses$/.test(path) ? "E" : /meters$/.test(path) ? "M" : /inputs$/.test(path) ? "IN" : "X";
  let n = 1;
  while (items.some((it) => it[key] === prefix + n)) n++;
  return prefix + n;
}

function redraw() {
  const y = window.scrollY;
  drawSetup(["unsaved changes", ""]);
  window.scrollTo(0, y);
}

async function save() {
  for (const el of document.querySelectorAll(".ferr")) el.textContent = "";
  for (const el of document.querySelectorAll(".bad-field")) el.classList.remove("bad-field");
  const msg = document.getElementById("save-msg");
  if (badJson.size) { msg.textContent = "fix the JSON in: " + [...badJson].join(", "); msg.className = "msg err"; return; }
  const r = await api("set_config", {}, {config: doc});
  if (r.ok) {
    doc = r.data.config; dirty = false; cfgCache = doc;
    drawSetup(["Saved.", "ok"]);
    return;
  }
  msg.textContent = r.data.error || "error " + r.status;
  msg.className = "msg err";
  let first = null;
  for (const fe of r.data.fields || []) {
    let p = fe.field, slot = null;
    while (p && !(slot = document.querySelector('[data-err="' + CSS.escape(p) + '"]'))) p = parentPath(p);
    const target = slot || msg;
    if (slot) {
      slot.append(h("div", {}, (p === fe.field ? "" : fe.field + ": ") + fe.error));
      const inp = document.querySelector('[data-path="' + CSS.escape(fe.field) + '"]');
      if (inp) inp.classList.add("bad-field");
      for (let d = slot.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
      first = first || slot;
    } else target.append(" · " + fe.field + ": " + fe.error);
  }
  if (first) first.scrollIntoView({block: "center"});
}

function parentPath(p) { const q = p.replace(/(\.[^.\[\]]+|\[\d+\])$/, ""); return q === p ? "" : q; }

window.addEventListener("beforeunload", (ev) => { if (dirty && location.hash === "#setup") ev.preventDefault(); });

function certificates() {
  const list = h("div", {id: "certs"});
  const msg = h("span", {class: "msg"});
  async function load() {
    const r = await api("get_certs");
    list.textContent = "";
    const certs = (r.data && r.data.certs) || [];
    list.append(certs.length ? h("table", {}, h("tr", {}, ["Use", "Name / subject", "Valid until", "Key", ""].map((c) => h("th", {}, c))),
      certs.map((c) => h("tr", {"data-cert": c.id}, h("td", {}, c.use + (c.builtin ? " (built-in)" : "")),
        h("td", {}, (c.name ? c.name + " · " : "") + fmt(c.subject)), h("td", {class: c.valid_now === false ? "err" : ""}, fmt(c.not_after)),
        h("td", {}, c.has_key ? "yes" : "no"),
        h("td", {}, c.builtin ? "" : h("button", {type: "button", class: "danger", onclick: async () => {
          const d = await api("delete_cert", {id: c.id}, {});
          msg.textContent = d.ok ? "deleted" : d.data.error; msg.className = d.ok ? "msg ok" : "msg err"; load();
        }}, "Delete"))))) : note("No certificates."));
  }
  const use = h("select", {name: "cert-use"}, ["server", "ca", "client"].map((u) => h("option", {value: u}, u)));
  const name = h("input", {name: "cert-name", placeholder: "name (optional)"});
  const cert = h("input", {type: "file", name: "cert-file", accept: ".pem,.crt,.cer"});
  const key = h("input", {type: "file", name: "key-file", accept: ".pem,.key"});
  const pass = h("input", {type: "password", name: "key-pass", placeholder: "key passphrase (if any)", autocomplete: "off"});
  const form = h("form", {id: "cert-form", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!cert.files[0]) { msg.textContent = "choose a certificate file"; msg.className = "msg err"; return; }
    const body = {use: use.value, name: name.value, cert: await cert.files[0].text()};
    if (key.files[0]) body.key = await key.files[0].text();
    if (pass.value) body.passphrase = pass.value;
    const r = await api("upload_cert", {}, body);
    msg.textContent = r.ok ? "imported" : r.data.error; msg.className = r.ok ? "msg ok" : "msg err";
    if (r.ok) { form.reset(); load(); }
  }}, h("div", {class: "grid"}, h("label", {}, "Use", use), h("label", {}, "Name", name), h("label", {}, "Certificate (PEM)", cert),
    h("label", {}, "Private key (PEM)", key), h("label", {}, "Passphrase", pass)), h("button", {type: "submit"}, "Upload"), msg);
  load();
  const c = card("Certificates", list, form);
  c.id = "sec-certs";
  return c;
}

function passwordCard() {
  const p1 = h("input", {type: "password", name: "new-password", autocomplete: "new-password"});
  const p2 = h("input", {type: "password", name: "new-password2", autocomplete: "new-password"});
  const msg = h("span", {class: "msg"});
  return Object.assign(card("Admin password", h("form", {id: "pw-form", class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    if (p1.value !== p2.value) { msg.textContent = "the two passwords differ"; msg.className = "msg err"; return; }
    const r = await api("set_password", {}, {password: p1.value});
    msg.textContent = r.ok ? "changed; other browsers are logged out" : r.data.error; msg.className = r.ok ? "msg ok" : "msg err";
    if (r.ok) ev.target.reset();
  }}, h("label", {}, "New ", p1), h("label", {}, "Again ", p2), h("button", {type: "submit"}, "Change"), msg)), {id: "sec-password"});
}

// --- actions -------------------------------------------------------------------------------------------------
async function actions() {
  const cf = await api("get_config");
  const evses = (cf.data.config && cf.data.config.evses) || [];
  const pick = () => h("select", {name: "dev"}, evses.map((e) => h("option", {value: e.dev_id}, e.dev_id + " " + (e.name || e.address))));
  function action(title_, text, controls, run) {
    const out = h("span", {class: "msg"});
    return card(title_, note(text), h("form", {class: "inline", onsubmit: async (ev) => {
      ev.preventDefault(); out.textContent = "…"; out.className = "msg";
      const r = await run(ev.target);
      out.textContent = r.ok ? "done" : r.data.error; out.className = r.ok ? "msg ok" : "msg err";
    }}, controls, out));
  }
  const parts = [];
  if (!evses.length) parts.push(note("No EVSEs configured: the EVSE actions appear once there is one."));
  if (has("override_device") && evses.length) {
    const mamps = h("input", {name: "mamps", placeholder: "empty: no override", inputmode: "numeric", size: 12});
    const flags = h("select", {name: "flags"}, [["", "unchanged"], ["C", "pause"], ["c", "allow"]].map(([v, t]) => h("option", {value: v}, t)));
    parts.push(action("Override or pause an EVSE", "A manual current limit or pause for one EVSE, until changed back here.",
      [h("label", {}, "EVSE ", pick()), h("label", {}, "Current (mA) ", mamps), h("label", {}, "Charging ", flags), h("button", {}, "Apply")],
      (f) => { const p = {dev_id: f.dev.value, mamps: mamps.value.trim()}; if (flags.value) p.flags = flags.value; return api("override_device", p); }));
  }
  if (has("clear_profiles") && evses.length) {
    parts.push(action("Clear charging profiles", "Remove every charging profile from a wallbox (before it is used without the manager).",
      [h("label", {}, "EVSE ", pick()), h("button", {}, "Clear profiles")], (f) => api("clear_profiles", {dev_id: f.dev.value}, {})));
  }
  const resetCmd = ["reset_overdraft", "reset_max_overdraft"].find(has);
  if (resetCmd) parts.push(action("Reset the overdraft", "Forget the largest overdraft seen.", [h("button", {}, "Reset")], () => api(resetCmd, {}, {})));
  const updCmd = has("ui:update");
  if (updCmd) parts.push(updateCard());
  parts.push(card("Diagnostics", note("Configuration without secrets, status, variables and the recent log, as one file for support."),
    h("a", {class: "button", href: "/ui/diagnostics.tar.gz", download: true, id: "diag"}, "Download diagnostics")));
  const missing = [["override_device", "override/pause"], ["clear_profiles", "clear profiles"]].filter(([c]) => !has(c)).map(([, t]) => t);
  if (!resetCmd) missing.push("reset overdraft");
  if (!updCmd) missing.push("update upload");
  if (missing.length) parts.push(note("Not in this build yet: " + missing.join(", ") + "."));
  view.append(...parts);
}

function updateCard() {
  const file = h("input", {type: "file", name: "bundle", accept: ".cmbundle"});
  const force = h("input", {type: "checkbox", name: "force"});
  const bar = h("progress", {max: 100, value: 0, id: "update-progress"});
  const msg = h("div", {class: "msg", id: "update-result"});
  return card("Update", note("Upload a signed update bundle (.cmbundle). It is verified (signature, device type, version, "
    + "image hash) before anything is written, then goes to the inactive slot, and the appliance restarts into it (if it does not come up healthy, it falls back to the running version)."),
    h("form", {class: "inline", id: "update-form", onsubmit: (ev) => {
      ev.preventDefault();
      if (!file.files[0]) { msg.textContent = "choose a bundle file"; msg.className = "msg err"; return; }
      const x = new XMLHttpRequest();
      x.open("POST", "/ui/update?force=" + (force.checked ? 1 : 0));
      x.setRequestHeader("X-CSRF-Token", CSRF);
      x.setRequestHeader("Content-Type", "application/octet-stream");
      x.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = 100 * e.loaded / e.total; };
      x.upload.onload = () => { bar.value = 100; msg.textContent = "uploaded; verifying and installing…"; msg.className = "msg"; };
      const show = (d) => {
        msg.textContent = "";
        msg.className = d.ok ? "msg ok" : "msg err";
        msg.append(h("b", {}, d.ok ? "Installed version " + d.version + ": " + d.next + "." : d.error),
          d.log && d.log.length ? h("pre", {}, d.log.join("\n")) : null);
      };
      // 202: the root installer has not answered yet; its result comes through get_update
      const poll = async (id) => {
        let r;
        try { r = await api("get_update"); } catch (e) { r = null; }
        const last = r && r.ok ? r.data.last : null;
        if (!last || last.id !== id) { setTimeout(() => poll(id), 2000); return; }
        const lines = last.log || [];
        show(last.state === "installed"
          ? {ok: true, version: last.version, log: lines, next: "the appliance restarts into it now"}
          : {error: "update " + last.state + ": " + last.message, log: lines});
      };
      x.onload = () => {
        let d; try { d = JSON.parse(x.responseText); } catch (e) { d = {error: "answer " + x.status}; }
        if (x.status === 202) { msg.textContent = "stored; waiting for the installer…"; msg.className = "msg"; poll(d.id); return; }
        show(d);
      };
      x.onerror = () => { msg.textContent = "upload failed (connection lost)"; msg.className = "msg err"; };
      bar.value = 0; msg.textContent = "uploading…"; msg.className = "msg";
      x.send(file.files[0]);
    }}, file, h("label", {}, force, " allow the same or an older version"), h("button", {}, "Upload and install"), bar), msg);
}

route();
