// Dashboard pages beyond fleet and device (issue 20): firmware, system, admin. Each gets the shared helpers, so that
// every string is rendered as text; controls appear only for the roles that may use them (the server checks anyway).

/** Firmware: images with their manifest, upload with a progress bar (operator), deployments, live downloads. */
export async function firmwarePage({ api, el, time, may, show, toast, route, listen }) {
  const [firmwares, deployments] = await Promise.all([api("GET", "/api/v1/firmwares"), api("GET", "/api/v1/deployments?limit=50")]);
  const rows = firmwares.items.map((firmware) => el("tr", { "data-version": firmware.version },
    el("td", {}, firmware.version),
    el("td", {}, firmware.signature_verified ? "verified" : firmware.error || "not verified"),
    el("td", { class: "num" }, firmware.manifest ? firmware.manifest.original_size : "–"),
    el("td", { class: "hide-narrow" }, firmware.manifest ? String(firmware.manifest.sha256_hash || "").slice(0, 16) : "–"),
    el("td", { class: "firmware-description" }, firmware.manifest ? firmware.manifest.description || "" : ""),
    el("td", {}, (firmware.active_deployments || []).join(", ") || "–")));
  const table = el("table", { id: "firmwares" },
    el("thead", {}, el("tr", {}, ...["Version", "Signature", "Size", "SHA-256", "Description", "Deployments"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
  const deploymentRows = deployments.items.map((deployment) => el("tr", {},
    el("td", {}, el("a", { href: `#/rollout/${deployment.id}`, title: "A deployment is a one-wave rollout" }, String(deployment.id))),
    el("td", {}, deployment.version), el("td", {}, deployment.status),
    el("td", {}, (deployment.device_ids || []).length || "all"), el("td", {}, time(deployment.created_at))));
  const deploymentTable = el("table", { id: "deployments" },
    el("thead", {}, el("tr", {}, ...["Id", "Version", "Status", "Devices", "Created"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, deploymentRows));
  const nodes = [el("h1", {}, "Firmware"), table];
  if (may("operator")) nodes.push(uploadForm({ el, toast, route }), deployForm({ api, el, toast, route }, firmwares.items));
  const downloads = el("tbody", {});
  nodes.push(el("h2", {}, "Downloads in progress"),
    el("table", { id: "downloads" }, el("thead", {}, el("tr", {}, ...["Device", "Version", "Phase", "Chunks", "Progress", "Last chunk"].map((h) => el("th", { scope: "col" }, h)))), downloads),
    el("h2", {}, "Deployments"), deploymentTable);
  show(...nodes);
  // Pushed by the server as devices fetch chunks and report phases (coalesced to at most two updates a second).
  listen("", {
    downloads: (sessions) => downloads.replaceChildren(...(sessions.length ? sessions.map((session) => {
      const percent = session.total_chunks ? Math.round((100 * session.chunks_served) / session.total_chunks) : 0;
      return el("tr", { "data-download": session.device_id },
        el("td", {}, el("a", { href: `#/device/${encodeURIComponent(session.device_id)}` }, session.device_id)),
        el("td", {}, session.version), el("td", {}, session.phase || "–"), el("td", { class: "num" }, `${session.chunks_served} / ${session.total_chunks}`),
        el("td", {}, el("progress", { max: "100", value: String(Math.min(100, percent)) }), ` ${Math.min(100, percent)} %`), el("td", {}, time(session.updated_at)));
    }) : [el("tr", {}, el("td", { colspan: "6" }, "None."))])),
  });
}

function uploadForm({ el, toast, route }) {
  const file = el("input", { type: "file", name: "image", "aria-label": "Firmware image", required: true });
  const version = el("input", { name: "version", placeholder: "version, e.g. 1.4.0", required: true, "aria-label": "Version" });
  const description = el("input", { name: "description", placeholder: "description (optional)", "aria-label": "Description" });
  const progress = el("progress", { max: "100", value: "0", hidden: true, id: "upload-progress" });
  const message = el("p", { role: "alert" });
  const form = el("form", { class: "stack", id: "upload-form" }, el("h2", {}, "Upload an image"), file, version, description,
    el("button", { type: "submit" }, "Upload"), progress, message);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!file.files[0]) return;
    // XMLHttpRequest: fetch has no upload progress.
    const request = new XMLHttpRequest();
    const query = new URLSearchParams({ version: version.value });
    if (description.value) query.set("description", description.value);
    request.open("POST", `/api/v1/firmwares?${query}`);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.setRequestHeader("X-CSRF-Token", window.ecowattCSRF || "");
    progress.hidden = false;
    request.upload.addEventListener("progress", (e) => { if (e.lengthComputable) progress.value = String(Math.round((100 * e.loaded) / e.total)); });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) { toast(`Image ${version.value} uploaded`); route(); return; }
      let text = `${request.status}`;
      try { text = JSON.parse(request.responseText).error.message; } catch (_) { /* the status says it */ }
      message.className = "error";
      message.textContent = text;
    });
    request.addEventListener("error", () => { message.className = "error"; message.textContent = "The upload failed (network)"; });
    request.send(file.files[0]);
  });
  return form;
}

function deployForm({ api, el, toast, route }, firmwares) {
  const version = el("select", { name: "version", "aria-label": "Version" }, firmwares.map((f) => el("option", { value: f.version }, f.version)));
  const devices = el("input", { name: "devices", placeholder: "device ids, comma-separated", "aria-label": "Devices" });
  const message = el("p", { role: "alert" });
  const form = el("form", { class: "stack", id: "deploy-form" }, el("h2", {}, "Deploy"), version, devices,
    el("button", { type: "submit" }, "Deploy"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ids = devices.value.split(",").map((id) => id.trim()).filter(Boolean);
    try {
      const deployment = await api("POST", "/api/v1/deployments", { version: version.value, device_ids: ids });
      toast(`Deployment ${deployment.id} created`);
      route();
    } catch (error) {
      message.className = "error";
      message.textContent = error.message;
    }
  });
  return form;
}

/** A byte count in KB, MB or GB. */
function bytes(value) {
  if (value === undefined || value === null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let index = 0;
  let amount = value;
  while (amount >= 1024 && index < units.length - 1) { amount /= 1024; index += 1; }
  return `${amount.toFixed(index === 0 ? 0 : 1)} ${units[index]}`;
}

/** System: the server (release, uptime, storage, ingest rate, streams), ingest and security counters, the MQTT feed. */
export async function systemPage({ api, el, time, show }) {
  const [stats, mqtt, system] = await Promise.all([api("GET", "/api/v1/stats"), api("GET", "/api/v1/mqtt"), api("GET", "/api/v1/system")]);
  const pairs = (title, id, entries) => el("section", { id }, el("h2", {}, title), el("table", {}, el("tbody", {},
    entries.map(([label, value]) => el("tr", {}, el("th", { scope: "row" }, label), el("td", { class: "num" }, value ?? "–"))))));
  const security = stats.security;
  const database = system.database;
  const uptime = system.uptime_seconds;
  show(el("h1", {}, "System"),
    pairs("Server", "system-server", [["version", `${system.version}${system.commit ? ` (${system.commit.slice(0, 12)})` : ""}`],
      ["started", time(system.started_at)], ["uptime", `${Math.floor(uptime / 86400)} d ${Math.floor((uptime % 86400) / 3600)} h ${Math.floor((uptime % 3600) / 60)} min`],
      ["uploads in the last minute", system.uploads_last_minute], ["uploads accepted since start", system.uploads_accepted],
      ["samples stored since start", system.samples_stored], ["live streams", `${system.event_streams_open} of ${system.event_streams_max}`]]),
    pairs("Storage", "system-storage", database
      ? [["database, total", bytes(database.total_bytes)], ...Object.entries(database.files).map(([file, size]) => [file, bytes(size)]),
        ["measured", time(database.measured_at)]]
      : [["database", "not measured yet"]]),
    pairs("Uploads", "system-uploads", [["validated", security.total_validations], ["accepted", security.successful_validations],
      ["refused", security.failed_validations], ["replays blocked", security.replay_attacks_blocked],
      ["bad signatures", security.signature_failures], ["samples stored", security.samples_stored]]),
    pairs("Refusals by reason", "system-reasons", Object.entries(security.rejected_by_reason || {})),
    pairs("MQTT feed", "system-mqtt", [["enabled", String(mqtt.enabled)], ["connected", String(mqtt.connected)], ["broker", mqtt.broker],
      ["backlog", mqtt.backlog], ["published", mqtt.published], ["dropped", mqtt.dropped], ["last error", mqtt.last_error]]));
}

/** Admin: users, tokens, and the audit trail with its chain status. */
export async function adminPage({ api, el, time, show }) {
  const [users, tokens, audit, chain] = await Promise.all([api("GET", "/api/v1/users"), api("GET", "/api/v1/tokens?all=true"),
    api("GET", "/api/v1/audit?limit=50"), api("GET", "/api/v1/audit/verify")]);
  const table = (id, headers, rows) => el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows));
  show(el("h1", {}, "Admin"),
    el("h2", {}, "Users"),
    table("users", ["User", "Role", "State", "Created"], users.items.map((user) => el("tr", {},
      el("td", {}, user.name), el("td", {}, user.role), el("td", {}, user.disabled ? "disabled" : "active"), el("td", {}, time(user.created_at))))),
    el("h2", {}, "API tokens"),
    table("tokens", ["Id", "Name", "User", "Role", "Prefix", "Last used", "Revoked"], tokens.items.map((token) => el("tr", {},
      el("td", {}, token.id), el("td", {}, token.name), el("td", {}, token.user), el("td", {}, token.role), el("td", {}, `${token.prefix}…`),
      el("td", {}, time(token.last_used_at)), el("td", {}, time(token.revoked_at))))),
    el("h2", {}, "Audit trail"),
    el("p", { id: "audit-chain", class: chain.intact ? "" : "error" }, chain.intact
      ? `Chain intact: ${chain.entries} entries, head ${chain.head_sequence}, external head ${chain.external_sequence ?? "–"}.`
      : `Chain BROKEN at entry ${chain.first_broken_sequence}: ${chain.first_broken_reason}`),
    table("audit", ["#", "Time", "Actor", "Action", "Target", "Outcome", "Address"], audit.items.map((entry) => el("tr", {},
      el("td", {}, entry.sequence), el("td", {}, time(entry.at)), el("td", {}, entry.actor), el("td", {}, entry.action),
      el("td", {}, entry.target), el("td", {}, entry.outcome), el("td", {}, entry.client_address)))));
}
