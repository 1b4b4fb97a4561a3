// The device page's further sections (issue 20): configuration (desired vs running, an editor that shows the
// server's refusal and its reasons), OTA, diagnostics, energy and fault reports, and for admins the key status. Every
// value from the device or an operator is rendered as text.

/** `{a: 1}` as "a = 1" lines, values as JSON text. */
function fields(el, object) {
  if (!object || Object.keys(object).length === 0) return el("p", {}, "–");
  return el("table", {}, el("tbody", {}, Object.entries(object).map(([name, value]) =>
    el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, typeof value === "string" ? value : JSON.stringify(value))))));
}

export async function configSection(path, { api, el, time, may, toast }) {
  const section = el("section", { id: "config" }, el("h2", {}, "Configuration"));
  const render = async () => {
    const config = await api("GET", `${path}/config`);
    const columns = el("div", { class: "cards" },
      el("div", { class: "card", id: "config-running" }, el("div", { class: "label" }, "Running (reported by the device)"), fields(el, config.running)),
      el("div", { class: "card", id: "config-pending" }, el("div", { class: "label" }, "Desired (pending)"),
        config.pending ? fields(el, config.pending) : el("p", {}, "nothing pending"),
        config.pending_created_at ? el("p", {}, "requested ", time(config.pending_created_at)) : null,
        config.pending_delivered_at ? el("p", {}, "delivered ", time(config.pending_delivered_at)) : null));
    section.replaceChildren(el("h2", {}, "Configuration"), columns);
    if (may("operator")) section.append(configEditor(path, { api, el, toast }, render));
  };
  await render();
  return section;
}

function configEditor(path, { api, el, toast }, render) {
  const text = el("textarea", { name: "config", rows: "3", "aria-label": "Configuration change as JSON" });
  text.value = '{"sampling_interval": 10}';
  const message = el("div", { role: "alert" });
  const form = el("form", { class: "stack", id: "config-form" }, el("label", {}, "Change (JSON, spec §5)", text),
    el("button", { type: "submit" }, "Request"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.replaceChildren();
    let change;
    try { change = JSON.parse(text.value); } catch (error) {
      message.replaceChildren(el("p", { class: "error" }, `Not JSON: ${error.message}`));
      return;
    }
    try {
      await api("PUT", `${path}/config/pending`, { config_update: change });
      toast("Configuration change requested");
      await render();
    } catch (error) {
      message.replaceChildren(el("p", { class: "error" }, error.message),
        error.details ? el("pre", { class: "details" }, JSON.stringify(error.details, null, 2)) : null);
    }
  });
  return form;
}

export async function otaSection(path, { api, el, time }) {
  const [ota, sessions] = await Promise.all([api("GET", `${path}/ota`), api("GET", `${path}/ota/sessions?limit=10`)]);
  const rows = sessions.items.map((session) => el("tr", {},
    el("td", {}, session.version), el("td", {}, session.phase || "–"),
    el("td", {}, el("progress", { max: "100", value: String(Math.round(session.progress ?? 0)) }), ` ${Math.round(session.progress ?? 0)} %`),
    el("td", {}, session.outcome || (session.active ? "in progress" : "–")), el("td", {}, session.message || ""), el("td", {}, time(session.started_at))));
  return el("section", { id: "ota" }, el("h2", {}, "Firmware updates"), el("p", {}, ota.active ? "A download is in progress." : "No download in progress."),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Version", "Phase", "Progress", "Outcome", "Message", "Started"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

export async function diagnosticsSection(path, { api, el }) {
  const page = await api("GET", `${path}/diagnostics?limit=20`);
  const rows = page.items.map((entry) => el("tr", { class: "diagnostic" }, el("td", {}, JSON.stringify(entry))));
  return el("section", { id: "diagnostics" }, el("h2", {}, "Diagnostics (newest 20)"),
    rows.length ? el("table", {}, el("tbody", {}, rows)) : el("p", {}, "None."));
}

export async function reportsSection(path, { api, el, time }) {
  const [energy, faults] = await Promise.all([api("GET", `${path}/reports/energy?limit=10`), api("GET", `${path}/reports/faults?limit=10`)]);
  return el("section", { id: "reports" }, el("h2", {}, "Reports"),
    el("h3", {}, "Energy"),
    energy.items.length ? el("table", {}, el("tbody", {}, energy.items.map((report) => el("tr", {},
      el("td", {}, time(report.received_at)), el("td", {}, `${report.avg_current_ma ?? "–"} mA average`),
      el("td", {}, `${report.energy_saved_mah ?? "–"} mAh saved`), el("td", {}, (report.techniques_list || []).join(", ")))))) : el("p", {}, "None."),
    el("h3", {}, `Faults (${faults.successful ?? 0} of ${faults.total ?? 0} recovered)`),
    faults.items.length ? el("table", {}, el("tbody", {}, faults.items.map((report) => el("tr", { class: "fault" },
      el("td", {}, time(report.received_at)), el("td", {}, report.fault_type), el("td", {}, report.recovery_action),
      el("td", {}, report.success ? "recovered" : "not recovered"), el("td", {}, report.details || ""))))) : el("p", {}, "None."));
}

export async function keySection(path, { api, el, time }) {
  try {
    const state = await api("GET", `${path}/credentials`);
    return el("section", { id: "key" }, el("h2", {}, "Device key"), fields(el, {
      key: state.own_key ? `own (${state.key_fingerprint})` : "fleet key",
      next: state.next_key_pending ? `pending (${state.next_key_fingerprint})` : "–",
      revoked: state.revoked_at ? new Date(state.revoked_at).toLocaleString() : "no",
    }));
  } catch (error) {
    return el("section", { id: "key" }, el("h2", {}, "Device key"), el("p", {}, error.status === 404 ? "Signs with the fleet key." : error.message));
  }
}

/** Refused uploads (auth failures, replays, …), undecodable packets and failed updates of this device, newest first. */
export async function securitySection(id, { api, el, time }) {
  const page = await api("GET", `/api/v1/security/events?device_id=${encodeURIComponent(id)}&limit=20`);
  return el("section", { id: "security" }, el("h2", {}, "Security events and problems (latest 20, since the server started)"),
    page.items.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["Time", "Kind", "Reason", "From"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, page.items.map((event) => el("tr", { class: "device-event" },
        el("td", {}, time(event.at)), el("td", {}, event.kind), el("td", {}, event.reason), el("td", {}, event.address || "–")))))
      : el("p", {}, "None."));
}

/** The latest packets with their decode outcome: partial, cut, lossy, estimated-time and undecodable ones marked. */
export async function packetsSection(path, { api, el, time }) {
  const page = await api("GET", `${path}/packets?limit=10`);
  const flags = (packet) => [
    packet.decoded ? null : `undecodable: ${packet.reason || "unknown"}${packet.detail ? ` (${packet.detail})` : ""}`,
    packet.partial ? "partial: cut on the wire, only its complete samples kept" : null,
    packet.approximate ? "approximate (lossy)" : null,
    packet.time_estimated ? "time estimated" : null,
  ].filter(Boolean);
  return el("section", { id: "packets" }, el("h2", {}, "Latest packets"),
    page.items.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["Last sample", "Method", "Samples", "Marked"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, page.items.map((packet) => {
        const marks = flags(packet);
        return el("tr", { class: marks.length ? "packet marked" : "packet" },
          el("td", {}, time(packet.last_sample_time)), el("td", {}, packet.method), el("td", { class: "num" }, packet.sample_count),
          el("td", { class: marks.length ? "warn" : "" }, marks.join("; ") || "–"));
      })))
      : el("p", {}, "None."));
}
