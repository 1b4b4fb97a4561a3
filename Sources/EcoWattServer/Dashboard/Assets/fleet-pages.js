// Fleet-wide dashboard pages (issue 20): commands, diagnostics, security over time; and the fleet page's sparkline.
// Every string from the server is rendered as text; filters are kept in the page's address so a view can be shared.

const svgNS = "http://www.w3.org/2000/svg";

/** Fleet upload rate per minute from the summary's running total, drawn as a small SVG line (no inline style). */
export class Sparkline {
  constructor(el, label) {
    this.points = [];
    this.rates = [];
    this.svg = document.createElementNS(svgNS, "svg");
    this.svg.setAttribute("viewBox", "0 0 120 30");
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.setAttribute("class", "sparkline");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", label);
    this.line = document.createElementNS(svgNS, "polyline");
    this.line.setAttribute("fill", "none");
    this.line.setAttribute("stroke", "currentColor");
    this.line.setAttribute("stroke-width", "1.5");
    this.line.setAttribute("vector-effect", "non-scaling-stroke");
    this.svg.append(this.line);
    this.value = el("span", { id: "upload-rate" }, "–");
    this.node = el("figure", { class: "sparkline-box", id: "fleet-sparkline" }, this.svg, el("figcaption", {}, `${label}: `, this.value, " /min"));
  }

  add(total) {
    const now = Date.now();
    const last = this.points[this.points.length - 1];
    this.points.push([now, total]);
    if (this.points.length > 2) this.points.shift();
    if (!last || now - last[0] < 500) return;
    const rate = Math.max(0, ((total - last[1]) * 60000) / (now - last[0]));
    this.rates.push(rate);
    if (this.rates.length > 60) this.rates.shift();
    this.value.textContent = rate.toFixed(rate < 10 ? 1 : 0);
    const max = Math.max(1, ...this.rates);
    const step = this.rates.length > 1 ? 120 / (this.rates.length - 1) : 0;
    this.line.setAttribute("points", this.rates.map((r, i) => `${(i * step).toFixed(1)},${(29 - (28 * r) / max).toFixed(1)}`).join(" "));
  }
}

function table(el, id, headers, rows, empty = "None.") {
  return el("table", { id }, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: String(headers.length) }, empty))]));
}

function filterForm(el, id, fields, onSubmit) {
  const form = el("form", { class: "filters", id }, ...fields, el("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => { event.preventDefault(); onSubmit(); });
  return form;
}

function select(el, name, label, values, current) {
  return el("select", { name, "aria-label": label }, values.map(([value, text]) => el("option", { value, selected: current === value }, text)));
}

/** Commands of every device, newest first, by status; operators cancel pending ones. */
export async function commandsPage({ api, el, time, may, show, toast, route }, params) {
  const statuses = ["", "pending", "dispatched", "completed", "failed", "timed_out", "expired", "cancelled"];
  const status = select(el, "status", "Status", statuses.map((s) => [s, s || "any status"]), params.get("status") || "");
  const query = new URLSearchParams({ limit: "50" });
  if (params.get("status")) query.set("status", params.get("status"));
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  const page = await api("GET", `/api/v1/commands?${query}`);
  const rows = page.items.map((command) => el("tr", { "data-command": command.command_id },
    el("td", {}, command.command_id.slice(0, 8)),
    el("td", {}, el("a", { href: `#/device/${encodeURIComponent(command.device_id)}` }, command.device_id)),
    el("td", {}, command.action), el("td", { class: "command-status" }, command.status), el("td", {}, time(command.created_at)),
    el("td", { class: "hide-narrow" }, command.error_message || (command.result ? JSON.stringify(command.result) : "")),
    el("td", {}, may("operator") && command.status === "pending" ? el("button", {
      type: "button", class: "secondary", onclick: async () => {
        try { await api("DELETE", `/api/v1/commands/${encodeURIComponent(command.command_id)}`); toast("Command cancelled"); route(); } catch (error) { toast(error.message, true); }
      },
    }, "Cancel") : "")));
  const next = page.next_cursor
    ? el("a", { id: "next-page", href: `#/commands?${new URLSearchParams({ ...Object.fromEntries(params), cursor: page.next_cursor })}` }, "Next page →") : null;
  show(el("h1", {}, "Commands"),
    filterForm(el, "command-filters", [status], () => { location.hash = `#/commands?${new URLSearchParams(status.value ? { status: status.value } : {})}`; }),
    table(el, "fleet-commands", ["Command", "Device", "Action", "Status", "Created", "Result", ""], rows), next);
}

/** Diagnostics: which devices sent how much; one device's entries, filtered by text. */
export async function diagnosticsPage({ api, el, time, show }, params) {
  const summary = await api("GET", "/api/v1/diagnostics/summary");
  const device = params.get("device") || "";
  const text = params.get("q") || "";
  const devices = select(el, "device", "Device", [["", "choose a device"], ...summary.devices.map((d) => [d.device_id, d.device_id])], device);
  const contains = el("input", { name: "q", placeholder: "contains text", value: text, "aria-label": "Contains text" });
  const nodes = [el("h1", {}, "Diagnostics"),
    filterForm(el, "diagnostics-filters", [devices, contains], () => {
      const query = new URLSearchParams();
      if (devices.value) query.set("device", devices.value);
      if (contains.value) query.set("q", contains.value);
      location.hash = `#/diagnostics?${query}`;
    })];
  if (device) {
    const page = await api("GET", `/api/v1/devices/${encodeURIComponent(device)}/diagnostics?limit=200`);
    const needle = text.toLowerCase();
    const entries = page.items.map((entry) => JSON.stringify(entry)).filter((line) => !needle || line.toLowerCase().includes(needle));
    nodes.push(el("h2", {}, `${device}: ${entries.length} of the newest ${page.items.length} entries`),
      table(el, "diagnostic-entries", ["Entry (JSON as stored)"], entries.map((line) => el("tr", { class: "diagnostic" }, el("td", { class: "mono" }, line)))));
  }
  nodes.push(el("h2", {}, `Devices with diagnostics (${summary.device_count})`),
    table(el, "diagnostics-devices", ["Device", "Entries", "Files", "Bytes", "Last received"], summary.devices.map((entry) => el("tr", {},
      el("td", {}, el("a", { href: `#/diagnostics?${new URLSearchParams({ device: entry.device_id })}` }, entry.device_id)),
      el("td", { class: "num" }, entry.entries), el("td", { class: "num" }, entry.files), el("td", { class: "num" }, entry.bytes),
      el("td", {}, time(entry.last_received_at))))));
  show(...nodes);
}

/** Security: refused uploads, decode failures and failed updates per minute by reason, and the latest events. */
export async function securityPage({ api, el, time, show }, params) {
  const hours = params.get("hours") || "1";
  const kind = params.get("kind") || "";
  const device = params.get("device") || "";
  const events = new URLSearchParams({ limit: "100" });
  if (kind) events.set("kind", kind);
  if (device) events.set("device_id", device);
  const [timeline, latest] = await Promise.all([api("GET", `/api/v1/security/timeline?hours=${encodeURIComponent(hours)}`),
    api("GET", `/api/v1/security/events?${events}`)]);
  const span = select(el, "hours", "Window", [["1", "last hour"], ["6", "last 6 hours"], ["24", "last 24 hours"]], hours);
  const kinds = select(el, "kind", "Kind", [["", "every kind"], ["security", "refused uploads"], ["decode", "decode failures"], ["update", "failed updates"], ["command", "commands without a result"]], kind);
  const deviceInput = el("input", { name: "device", placeholder: "device id", value: device, "aria-label": "Device id" });
  const reasons = [...new Set(timeline.minutes.flatMap((minute) => Object.keys(minute.counts)))].sort();
  const totals = reasons.map((reason) => [reason, timeline.minutes.reduce((sum, minute) => sum + (minute.counts[reason] || 0), 0)]);
  const chartBox = el("div", { class: "chart-box", id: "security-chart" }, el("canvas", { "aria-label": "Events per minute by reason" }));
  show(el("h1", {}, "Security"),
    filterForm(el, "security-filters", [span, kinds, deviceInput], () => {
      const query = new URLSearchParams({ hours: span.value });
      if (kinds.value) query.set("kind", kinds.value);
      if (deviceInput.value) query.set("device", deviceInput.value);
      location.hash = `#/security?${query}`;
    }),
    el("p", {}, "Kept in memory since the server started; the totals since start are on the System page and in /metrics."),
    table(el, "security-totals", ["Kind / reason", "Events in the window"], totals.map(([reason, count]) => el("tr", {},
      el("td", {}, reason), el("td", { class: "num" }, count)))),
    timeline.minutes.length && window.Chart !== undefined ? chartBox : el("p", {}, timeline.minutes.length ? "" : "No events in the window."),
    el("h2", {}, device ? `Latest events of ${device}` : "Latest events"),
    table(el, "security-events", ["Time", "Device", "Kind", "Reason", "From"], latest.items.map((event) => el("tr", { class: "device-event" },
      el("td", {}, time(event.at)), el("td", {}, el("a", { href: `#/device/${encodeURIComponent(event.device_id)}` }, event.device_id)),
      el("td", {}, event.kind), el("td", {}, event.reason), el("td", {}, event.address || "–")))));
  if (!timeline.minutes.length || window.Chart === undefined) return;
  const colors = ["#b42318", "#b54708", "#0b6bcb", "#067647", "#6941c6", "#5b6475", "#c11574", "#026aa2"];
  new window.Chart(chartBox.querySelector("canvas"), {
    type: "bar",
    data: {
      datasets: reasons.map((reason, index) => ({
        label: reason, backgroundColor: colors[index % colors.length], maxBarThickness: 10,
        data: timeline.minutes.map((minute) => ({ x: Date.parse(minute.minute), y: minute.counts[reason] || 0 })),
      })),
    },
    options: {
      animation: false, maintainAspectRatio: false, parsing: true,
      scales: {
        x: {
          type: "linear", stacked: true, min: Date.parse(timeline.since), max: Date.now(),
          ticks: { stepSize: { 1: 300000, 6: 1800000, 24: 7200000 }[hours] || 300000,
            callback: (value) => new Date(value).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) },
        },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "events per minute" } },
      },
    },
  });
}
