// The device chart (issue 20): each register in real units over a window, from Debian's Chart.js 3 (a global
// `Chart`, linear x axis of epoch milliseconds with our own labels: it has no date adapter). Long windows come
// downsampled by the server (minute or hour rollups: mean, with min and max), so a chart never gets more points than
// it can draw. Gaps stay gaps; approximate (lossy) samples are drawn as triangles.
const windows = { "1 h": 3600e3, "24 h": 86400e3, "7 d": 7 * 86400e3 };
const colors = ["#0b6bcb", "#b42318", "#067647", "#b54708", "#6941c6", "#475467", "#c11574", "#0e9384"];

/** The resolution the server should answer for a window: at most ~2 900 points per register. */
function resolution(span) {
  if (span <= 2 * 3600e3) return "raw";
  if (span <= 2 * 86400e3) return "minute";
  return "hour";
}

/** Points with `null` where the time step is more than three times the usual one (a gap is drawn as a gap). */
function withGaps(points) {
  const steps = points.slice(1).map((point, i) => point.x - points[i].x).sort((a, b) => a - b);
  const usual = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
  const out = [];
  points.forEach((point, i) => {
    if (i > 0 && usual > 0 && point.x - points[i - 1].x > 3 * usual) out.push({ x: points[i - 1].x + usual, y: null });
    out.push(point);
  });
  return out;
}

export class DeviceChart {
  constructor(path, el, api) {
    this.path = path;
    this.api = api;
    this.span = windows["1 h"];
    this.end = null; // null: up to now, and live
    this.status = el("p", { id: "chart-status" });
    this.canvas = el("canvas", { id: "chart", role: "img", "aria-label": "Register values over time" });
    const buttons = Object.entries(windows).map(([label, span]) =>
      el("button", { type: "button", class: "secondary", onclick: () => { this.span = span; this.end = null; this.load(); } }, label));
    const zoomIn = el("button", { type: "button", class: "secondary", onclick: () => { this.span = Math.max(60e3, this.span / 2); this.load(); } }, "Zoom in");
    const zoomOut = el("button", { type: "button", class: "secondary", onclick: () => { this.span *= 2; this.load(); } }, "Zoom out");
    this.node = el("section", { id: "chart-section" }, el("h2", {}, "Values over time"),
      el("div", { class: "filters" }, ...buttons, zoomIn, zoomOut), el("div", { class: "chart-box" }, this.canvas), this.status);
  }

  async load() {
    if (typeof Chart === "undefined") {
      this.status.textContent = "Charts need Chart.js (Debian's libjs-chart.js) on the server; the latest values are above.";
      return;
    }
    const end = this.end ?? Date.now();
    const start = end - this.span;
    const wanted = resolution(this.span);
    const query = new URLSearchParams({ start: new Date(start).toISOString(), end: new Date(end).toISOString(), limit: "5000", resolution: wanted });
    const page = await this.api("GET", `${this.path}/telemetry?${query}`);
    const series = new Map();
    const add = (name, x, y, approximate) => {
      if (!series.has(name)) series.set(name, []);
      series.get(name).push({ x, y, approximate });
    };
    for (const sample of page.samples || []) {
      for (const [name, value] of Object.entries(sample.registers)) add(name, sample.timestamp_ms, value, sample.approximate);
    }
    for (const rollup of page.rollups || []) {
      for (const [name, value] of Object.entries(rollup.registers)) add(name, rollup.timestamp_ms, value, false);
    }
    this.units = this.units || {};
    const datasets = [...series.entries()].map(([name, points], i) => ({
      label: name, data: withGaps(points), borderColor: colors[i % colors.length], backgroundColor: colors[i % colors.length],
      borderWidth: 1.5, pointRadius: (context) => (context.raw && context.raw.approximate ? 4 : 0),
      pointStyle: (context) => (context.raw && context.raw.approximate ? "triangle" : "circle"), spanGaps: false,
    }));
    const count = datasets.reduce((sum, dataset) => sum + dataset.data.length, 0);
    this.status.textContent = `${page.resolution} resolution, ${count} points, ${new Date(start).toLocaleString()} – ${new Date(end).toLocaleString()}`;
    if (this.chart) this.chart.destroy();
    this.chart = new Chart(this.canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
        scales: { x: { type: "linear", min: start, max: end, ticks: { maxTicksLimit: 8, callback: (value) => new Date(value).toLocaleString() } } },
        plugins: { tooltip: { callbacks: { title: (items) => items.length ? new Date(items[0].parsed.x).toISOString() : "" } } },
      },
    });
    performance.mark("chart-rendered"); // scripts/bench-dashboard.sh reads it
  }

  /** A sample from the live stream: appended while the window ends now. */
  push(sample) {
    if (!this.chart || this.end !== null) return;
    for (const dataset of this.chart.data.datasets) {
      const value = sample.registers[dataset.label];
      const last = dataset.data[dataset.data.length - 1];
      if (value === undefined || (last && last.x >= sample.timestamp_ms)) continue;
      dataset.data.push({ x: sample.timestamp_ms, y: value, approximate: sample.approximate });
    }
    const now = Date.now();
    this.chart.options.scales.x.min = now - this.span;
    this.chart.options.scales.x.max = now;
    this.chart.update("none");
  }

  get points() { return this.chart ? this.chart.data.datasets.reduce((sum, d) => sum + d.data.filter((p) => p.y !== null).length, 0) : 0; }
}
