// Staged rollouts (issue 21): the list with each rollout's progress, a form to start one, and one rollout's waves and
// devices with their timeline. Live: the page re-reads when the server pushes download progress or fleet changes.

const stateOrder = ["healthy", "installed", "downloading", "offered", "pending", "failed"];

function countsText(counts) {
  return stateOrder.filter((state) => counts && counts[state]).map((state) => `${counts[state]} ${state}`).join(", ") || "–";
}

/** A bar of the devices by state (healthy, in flight, failed, pending), as a <meter> per part with text beside it. */
function progress(el, counts) {
  const total = Object.values(counts || {}).reduce((sum, value) => sum + value, 0) || 1;
  const healthy = counts.healthy || 0;
  return el("span", {}, el("progress", { max: String(total), value: String(healthy), title: countsText(counts) }), ` ${healthy}/${total} healthy`);
}

function actionButtons({ api, el, may, toast, route }, rollout) {
  if (!may("operator")) return null;
  const actions = [];
  if (rollout.status === "active") actions.push(["pause", "Pause"]);
  if (rollout.status === "paused" || rollout.status === "halted") actions.push(["resume", "Resume"]);
  if (["active", "paused", "halted"].includes(rollout.status)) {
    if (rollout.current_wave < rollout.wave_count) actions.push(["advance", "Next wave now"]);
    if ((rollout.counts || {}).failed) actions.push(["retry", "Retry failed"]);
    actions.push(["cancel", "Cancel"]);
  }
  if ((rollout.counts || {}).healthy || (rollout.counts || {}).installed) actions.push(["rollback", "Roll back"]);
  return el("span", { class: "actions" }, actions.map(([action, label]) => el("button", {
    type: "button", class: "secondary", "data-action": action, onclick: async () => {
      if ((action === "cancel" || action === "rollback") && !window.confirm(`${label} rollout ${rollout.id}?`)) return;
      try { await api("POST", `/api/v1/rollouts/${rollout.id}/${action}`); toast(`Rollout ${rollout.id}: ${label.toLowerCase()} done`); route(); } catch (error) { toast(error.message, true); }
    },
  }, label)));
}

export async function rolloutsPage(helpers) {
  const { api, el, time, may, show, listen } = helpers;
  const [page, firmwares] = await Promise.all([api("GET", "/api/v1/rollouts?limit=50"), api("GET", "/api/v1/firmwares")]);
  const body = el("tbody", {});
  const render = (items) => body.replaceChildren(...(items.length ? items.map((rollout) => el("tr", { "data-rollout": String(rollout.id) },
    el("td", {}, el("a", { href: `#/rollout/${rollout.id}` }, String(rollout.id))), el("td", {}, rollout.version),
    el("td", { class: `rollout-status status-${rollout.status}` }, rollout.status, rollout.reason ? el("div", { class: "muted" }, rollout.reason) : null),
    el("td", {}, `${rollout.current_wave} of ${rollout.wave_count}`), el("td", {}, progress(el, rollout.counts || {})),
    el("td", { class: "hide-narrow" }, countsText(rollout.counts)), el("td", { class: "hide-narrow" }, time(rollout.created_at)),
    el("td", {}, actionButtons(helpers, rollout)))) : [el("tr", {}, el("td", { colspan: "8" }, "No rollouts yet."))]));
  render(page.items);
  const nodes = [el("h1", {}, "Rollouts ", el("span", { class: "live", id: "live" })),
    el("table", { id: "rollouts" }, el("thead", {}, el("tr", {}, ...["Id", "Version", "Status", "Wave", "Progress", "Devices", "Created", ""].map((h, i) =>
      el("th", { scope: "col", class: i === 5 || i === 6 ? "hide-narrow" : "" }, h)))), body)];
  if (may("operator")) nodes.push(createForm(helpers, firmwares.items));
  show(...nodes);
  const reload = async () => { try { render((await api("GET", "/api/v1/rollouts?limit=50")).items); } catch (_) { /* the next event retries */ } };
  listen("", { downloads: reload, summary: reload });
}

function createForm({ api, el, toast, route }, firmwares) {
  const version = el("select", { name: "version", "aria-label": "Version" }, firmwares.map((f) => el("option", { value: f.version }, f.version)));
  const target = el("select", { name: "target", "aria-label": "Target" },
    el("option", { value: "prefix" }, "devices whose id starts with"), el("option", { value: "list" }, "these devices (comma-separated)"),
    el("option", { value: "all" }, "every device"));
  const value = el("input", { name: "value", placeholder: "id prefix or ids", "aria-label": "Target value" });
  const waves = el("input", { name: "waves", value: "1,10,50,100", "aria-label": "Waves (cumulative %)" });
  const message = el("p", { role: "alert" });
  const form = el("form", { class: "stack", id: "rollout-form" }, el("h2", {}, "Start a rollout"), version, target, value,
    el("label", {}, "Waves (cumulative %)", waves), el("button", { type: "submit" }, "Start"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { version: version.value, settings: { waves: waves.value.split(",").map((part) => Number(part.trim())) } };
    if (target.value === "all") body.all = true;
    else if (target.value === "prefix") body.id_prefix = value.value;
    else body.device_ids = value.value.split(",").map((id) => id.trim()).filter(Boolean);
    try {
      const rollout = await api("POST", "/api/v1/rollouts", body);
      toast(`Rollout ${rollout.id} started`);
      location.hash = `#/rollout/${rollout.id}`;
      route();
    } catch (error) {
      message.className = "error";
      message.textContent = error.message;
    }
  });
  return form;
}

export async function rolloutPage(helpers, id) {
  const { api, el, time, show, listen } = helpers;
  const path = `/api/v1/rollouts/${encodeURIComponent(id)}`;
  const summary = el("section", { id: "rollout-summary" });
  const devicesBody = el("tbody", {});
  const render = async () => {
    const [rollout, devices] = await Promise.all([api("GET", path), api("GET", `${path}/devices?limit=1000`)]);
    summary.replaceChildren(
      el("p", { class: `rollout-status status-${rollout.status}` }, `${rollout.version}: ${rollout.status}`, rollout.reason ? ` — ${rollout.reason}` : "",
        `, wave ${rollout.current_wave} of ${rollout.wave_count} (opened `, time(rollout.wave_opened_at), ")"),
      actionButtons(helpers, rollout),
      el("table", { id: "rollout-waves" }, el("thead", {}, el("tr", {}, ...["Wave", "Open", "Devices", "Progress", "By state"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, (rollout.waves || []).map((wave) => el("tr", {}, el("td", {}, String(wave.wave)), el("td", {}, wave.open ? "open" : "waiting"),
          el("td", { class: "num" }, String(wave.targeted)), el("td", {}, progress(el, wave.counts)), el("td", {}, countsText(wave.counts)))))));
    devicesBody.replaceChildren(...devices.items.map((device) => el("tr", { "data-device": device.device_id },
      el("td", {}, el("a", { href: `#/device/${encodeURIComponent(device.device_id)}` }, device.device_id)), el("td", {}, String(device.wave)),
      el("td", { class: `device-state state-${device.state}` }, device.state), el("td", {}, device.reason || ""), el("td", { class: "hide-narrow" }, device.from_version || "–"),
      el("td", { class: "hide-narrow" }, time(device.started_at)), el("td", { class: "hide-narrow" }, time(device.installed_at)), el("td", {}, time(device.finished_at)))));
  };
  await render();
  show(el("h1", {}, `Rollout ${id} `, el("span", { class: "live", id: "live" })), summary, el("h2", {}, "Devices"),
    el("table", { id: "rollout-devices" }, el("thead", {}, el("tr", {}, ...["Device", "Wave", "State", "Reason", "From", "Started", "Installed", "Finished"].map((h, i) =>
      el("th", { scope: "col", class: i >= 4 && i <= 6 ? "hide-narrow" : "" }, h)))), devicesBody));
  const reload = async () => { try { await render(); } catch (_) { /* the next event retries */ } };
  listen("", { downloads: reload, summary: reload });
}
