// EcoWatt Cloud dashboard (issue 20): login, fleet, device, and the routing to the other pages. Plain ES modules, no
// build step.
// Every string from the server is rendered as text (textContent), never as HTML.
import { DeviceChart } from "./device-chart.js";
import { configSection, diagnosticsSection, keySection, otaSection, packetsSection, reportsSection, securitySection } from "./device-sections.js";
import { adminPage, firmwarePage, systemPage } from "./pages.js";
import { commandsPage, diagnosticsPage, securityPage, Sparkline } from "./fleet-pages.js";
import { rolloutPage, rolloutsPage } from "./rollouts.js";

const main = document.getElementById("main");
const roles = { viewer: 0, operator: 1, admin: 2 };
let me = null;
/** The page's live stream (GET /api/v1/events): one per tab, replaced when the page changes. */
let stream = null;

function listen(query, handlers) {
  if (stream) stream.close();
  stream = new EventSource(`/api/v1/events${query}`);
  for (const [name, handler] of Object.entries(handlers)) {
    stream.addEventListener(name, (event) => handler(JSON.parse(event.data)));
  }
  stream.addEventListener("open", () => { const badge = document.getElementById("live"); if (badge) badge.textContent = "● live"; });
  stream.addEventListener("error", () => { const badge = document.getElementById("live"); if (badge) badge.textContent = "○ reconnecting"; });
  stream.addEventListener("end", () => { stream.close(); stream = null; me = null; document.getElementById("nav").hidden = true; loginView(); });
}

function stopListening() {
  if (stream) stream.close();
  stream = null;
}

/** A request to the operator API with the session cookie and the CSRF token; throws the server's message. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (me && me.csrf_token && method !== "GET") headers["X-CSRF-Token"] = me.csrf_token;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((json && json.error && json.error.message) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.details = json && json.error && json.error.details;
    throw error;
  }
  return json;
}

/** Builds an element; string children become text nodes. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A time in the browser's zone, UTC on hover. */
function time(iso) {
  if (!iso) return el("span", {}, "–");
  const date = new Date(iso);
  return el("time", { datetime: iso, title: date.toISOString() }, date.toLocaleString());
}

function toast(message, isError = false) {
  const box = document.getElementById("toast");
  box.replaceChildren(el("span", { class: isError ? "error" : "" }, message));
  setTimeout(() => { if (box.textContent === message) box.replaceChildren(); }, 6000);
}

function show(...nodes) {
  main.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined && node !== false));
  main.focus();
}

function may(role) { return me && roles[me.role] >= roles[role]; }

// MARK: Login

function loginView() {
  const message = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "stack", id: "login-form" },
    el("h1", {}, "Log in"),
    el("label", {}, "User name", el("input", { name: "name", autocomplete: "username", required: true })),
    el("label", {}, "Password", el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    el("button", { type: "submit" }, "Log in"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await api("POST", "/api/v1/auth/login", { name: data.get("name"), password: data.get("password") });
      await loadMe();
      // Stay on the page that asked for the login (setting the same hash fires no event).
      if (!location.hash || location.hash === "#/login") location.hash = "#/fleet";
      else route();
    } catch (error) {
      message.textContent = error.message;
    }
  });
  show(form);
}

async function loadMe() {
  const answer = await api("GET", "/api/v1/auth/me");
  if (answer.kind === "anonymous") {
    const error = new Error("not logged in");
    error.status = 401;
    throw error;
  }
  me = answer;
  window.ecowattCSRF = me.csrf_token;
  document.getElementById("admin-link").hidden = !may("admin");
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = `${me.actor} (${me.role})`;
}

// MARK: Fleet

async function fleetView(params) {
  const summary = await api("GET", "/api/v1/fleet/summary");
  const card = (label, value, id) => el("div", { class: "card" }, el("div", { class: "value", id }, value), el("div", { class: "label" }, label));
  const cards = el("div", { class: "cards" },
    card("devices", summary.devices, "count-devices"), card("online", summary.online, "count-online"),
    card("offline", summary.offline, "count-offline"), card("updating", summary.updating, "count-updating"),
    card("with problems (24 h)", summary.with_problems, "count-problems"),
    card("uploads refused", summary.uploads_rejected, "count-rejected"));
  const sparkline = new Sparkline(el, "Fleet uploads per minute, since this page opened");
  const status = el("select", { name: "status", "aria-label": "Status" },
    ...["", "online", "offline", "updating"].map((value) => el("option", { value, selected: params.get("status") === value }, value || "any status")));
  const prefix = el("input", { name: "prefix", placeholder: "id starts with", value: params.get("prefix") || "", "aria-label": "Id prefix" });
  const filters = el("form", { class: "filters", id: "filters" }, status, prefix, el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (status.value) query.set("status", status.value);
    if (prefix.value) query.set("prefix", prefix.value);
    location.hash = `#/fleet?${query}`;
  });
  const query = new URLSearchParams({ limit: "100" });
  if (params.get("status")) query.set("status", params.get("status"));
  if (params.get("prefix")) query.set("id_prefix", params.get("prefix"));
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  const page = await api("GET", `/api/v1/devices?${query}`);
  const deviceRows = (items) => items.map((device) => el("tr", { "data-device": device.device_id },
    el("td", {}, el("a", { href: `#/device/${encodeURIComponent(device.device_id)}` }, device.device_id)),
    el("td", { class: "hide-narrow" }, device.device_name || ""),
    el("td", { class: `status-${device.status}` }, device.status),
    el("td", {}, time(device.last_seen)),
    el("td", { class: "hide-narrow" }, device.firmware_version || "–"),
    el("td", { class: "num hide-narrow", title: `${device.upload_count} uploads stored` }, device.uploads_per_hour === undefined ? "–" : `${device.uploads_per_hour.toFixed(device.uploads_per_hour < 10 ? 1 : 0)} /h`),
    el("td", { class: "num", title: device.latest_power_at ? new Date(device.latest_power_at).toISOString() : "" }, device.latest_power_w === undefined ? "–" : `${Math.round(device.latest_power_w)} W`),
    el("td", { class: device.recent_problems ? "num error" : "num" }, device.recent_problems
      ? el("a", { href: `#/security?device=${encodeURIComponent(device.device_id)}`, title: "refused uploads, undecodable packets, failed updates, commands without a result in 24 h" }, device.recent_problems)
      : "–"),
    el("td", { class: "hide-narrow" }, device.admission)));
  const rows = el("tbody", {}, deviceRows(page.items));
  const table = el("table", { id: "devices" },
    el("thead", {}, el("tr", {}, ...["Device", "Name", "Status", "Last seen", "Firmware", "Uploads", "Power", "Problems", "Admission"].map((h, i) =>
      el("th", { scope: "col", class: [1, 4, 5, 8].includes(i) ? "hide-narrow" : "" }, h)))),
    rows);
  const next = page.next_cursor
    ? el("a", { href: `#/fleet?${new URLSearchParams({ ...Object.fromEntries(params), cursor: page.next_cursor })}`, id: "next-page" }, "Next page →")
    : null;
  show(el("h1", {}, "Fleet ", el("span", { class: "live", id: "live" })), cards, sparkline.node, filters, table, next);
  performance.mark("fleet-rendered"); // scripts/bench-dashboard.sh reads it
  let shown = null;
  listen("", {
    summary: async (counts) => {
      // The counts changed after the first event: this page's rows are read again (one request, coalesced by the
      // server to at most one event per 2 s).
      const key = JSON.stringify([counts.devices, counts.online, counts.offline, counts.updating]);
      if (shown !== null && shown !== key) {
        try { rows.replaceChildren(...deviceRows((await api("GET", `/api/v1/devices?${query}`)).items)); } catch (_) { /* the next event retries */ }
      }
      shown = key;
      sparkline.add(counts.uploads_accepted);
      for (const [id, value] of [["count-devices", counts.devices], ["count-online", counts.online], ["count-offline", counts.offline],
        ["count-updating", counts.updating], ["count-problems", counts.with_problems], ["count-rejected", counts.uploads_rejected]]) {
        const node = document.getElementById(id);
        if (node) node.textContent = value;
      }
    },
  });
}

// MARK: Device

async function deviceView(id) {
  const path = `/api/v1/devices/${encodeURIComponent(id)}`;
  const device = await api("GET", path);
  const details = el("table", { id: "device-details" }, el("tbody", {},
    ...[["Device", device.device_id], ["Name", device.device_name], ["Location", device.location], ["Description", device.description],
      ["Status", device.status], ["Firmware", device.firmware_version], ["Admission", device.admission], ["Uploads", device.upload_count]]
      .map(([label, value]) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, value ?? "–"))),
    el("tr", {}, el("th", { scope: "row" }, "Last seen"), el("td", {}, time(device.last_seen)))));
  const latest = el("section", { id: "latest" }, el("h2", {}, "Latest values"));
  const units = {};
  const renderLatest = (sample) => latest.replaceChildren(el("h2", {}, "Latest values"),
    el("p", {}, "At ", time(sample.timestamp), sample.approximate ? " (approximate: lossy compression)" : "",
      sample.time_estimated ? " (time estimated)" : ""),
    el("table", { id: "latest-values" }, el("tbody", {}, Object.entries(sample.registers).map(([name, value]) => el("tr", {},
      el("th", { scope: "row" }, name), el("td", { class: "num" }, value), el("td", {}, units[name] || ""))))));
  if (!device.upload_count) {
    latest.append(el("p", {}, "No telemetry yet."));
  } else {
    try {
      const answer = await api("GET", `${path}/telemetry/latest`);
      for (const register of answer.registers) units[register.name] = register.unit;
      renderLatest(answer.sample);
    } catch (error) {
      latest.append(el("p", {}, error.status === 404 ? "No telemetry yet." : error.message));
    }
  }
  const commands = await api("GET", `${path}/commands?limit=20`);
  const commandBody = el("tbody", {}, commandRows(commands.items));
  const commandSection = el("section", { id: "commands" }, el("h2", {}, "Commands"),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Command", "Action", "Status", "Created", "Result"].map((h) => el("th", { scope: "col" }, h)))),
      commandBody));
  if (may("operator")) commandSection.append(commandForm(path));
  const chart = new DeviceChart(path, el, api);
  const helpers = { api, el, time, may, toast };
  const sections = await Promise.all([
    packetsSection(path, helpers), configSection(path, helpers), otaSection(path, helpers), securitySection(id, helpers), diagnosticsSection(path, helpers),
    reportsSection(path, helpers), may("admin") ? keySection(path, helpers) : null,
  ]);
  show(el("h1", {}, `Device ${device.device_id} `, el("span", { class: "live", id: "live" })), details, latest, chart.node, commandSection,
    ...sections.filter(Boolean));
  window.ecowattChart = chart;
  await chart.load();
  listen(`?device_id=${encodeURIComponent(id)}`, {
    sample: async (sample) => {
      renderLatest(sample);
      chart.push(sample);
      const node = document.getElementById("packets");
      if (node) node.replaceWith(await packetsSection(path, helpers));
    },
    commands: (items) => commandBody.replaceChildren(...commandRows(items)),
    ota: async () => { const node = document.getElementById("ota"); if (node) node.replaceWith(await otaSection(path, helpers)); },
    problems: async () => { const node = document.getElementById("security"); if (node) node.replaceWith(await securitySection(id, helpers)); },
  });
}

function commandRows(items) {
  return items.map((command) => el("tr", { "data-command": command.command_id },
    el("td", {}, command.command_id.slice(0, 8)), el("td", {}, command.action), el("td", { class: "command-status" }, command.status),
    el("td", {}, time(command.created_at)), el("td", {}, command.error_message || (command.result ? JSON.stringify(command.result) : ""))));
}

function commandForm(path) {
  const message = el("p", { role: "alert" });
  const action = el("select", { name: "action", "aria-label": "Action" },
    ...["get_power_stats", "set_power", "write_register"].map((value) => el("option", { value }, value)));
  const register = el("input", { name: "register", placeholder: "register (write_register)", "aria-label": "Register" });
  const value = el("input", { name: "value", type: "number", placeholder: "value", "aria-label": "Value" });
  const form = el("form", { class: "stack", id: "command-form" }, el("h2", {}, "Queue a command"), action, register, value,
    el("button", { type: "submit" }, "Queue"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { action: action.value };
    if (register.value) body.target_register = register.value;
    if (value.value !== "") body.value = Number(value.value);
    try {
      const command = await api("POST", `${path}/commands`, body);
      toast(`Command ${command.command_id.slice(0, 8)} queued`);
    } catch (error) {
      message.className = "error";
      message.textContent = error.message;
    }
  });
  return form;
}

// MARK: Routing

async function route() {
  stopListening();
  const [page, rest = ""] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(rest);
  try {
    if (!me) await loadMe();
    const helpers = { api, el, time, may, show, toast, route, listen };
    if (page.startsWith("/device/")) await deviceView(decodeURIComponent(page.slice("/device/".length)));
    else if (page === "/firmware") await firmwarePage(helpers);
    else if (page === "/system") await systemPage(helpers);
    else if (page === "/commands") await commandsPage(helpers, params);
    else if (page === "/rollouts") await rolloutsPage(helpers);
    else if (page.startsWith("/rollout/")) await rolloutPage(helpers, decodeURIComponent(page.slice("/rollout/".length)));
    else if (page === "/diagnostics") await diagnosticsPage(helpers, params);
    else if (page === "/security") await securityPage(helpers, params);
    else if (page === "/admin") await adminPage(helpers);
    else await fleetView(params);
  } catch (error) {
    if (error.status === 401) {
      me = null;
      document.getElementById("nav").hidden = true;
      loginView();
    } else {
      show(el("h1", {}, "Error"), el("p", { class: "error", role: "alert" }, error.message));
    }
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  stopListening();
  try { await api("POST", "/api/v1/auth/logout"); } catch (error) { toast(error.message, true); }
  me = null;
  document.getElementById("nav").hidden = true;
  loginView();
});
window.addEventListener("hashchange", route);
// Leaving the page closes its stream (an HTTP/1.1 browser allows 6 connections per host; streams of pages kept in the
// back-forward cache would use them up); coming back opens it again.
window.addEventListener("pagehide", stopListening);
window.addEventListener("pageshow", (event) => { if (event.persisted) route(); });
route();
