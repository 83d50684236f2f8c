// The plain status page: polls the daemon's own status and readiness endpoints.
"use strict";

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + "d " : "") + (h ? h + "h " : "") + (m ? m + "m " : "") + (s % 60) + "s";
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

async function refresh() {
  const summary = document.getElementById("summary");
  try {
    const [status, ready] = await Promise.all([
      fetch("/api/v1/status").then((r) => r.json()),
      fetch("/readyz").then((r) => r.json()),
    ]);
    summary.textContent = `Version ${status.version}, ${ready.status === "ready" ? "ready" : "NOT ready"}, up ${formatDuration(status.uptime_seconds)}`;
    const body = document.querySelector("#checks tbody");
    body.replaceChildren(...ready.checks.map((c) => row([[c.name], [c.status, c.status], [c.detail + (c.hint ? " — " + c.hint : "")]])));
    const dl = document.getElementById("daemon");
    const items = {
      "PID": status.pid,
      "Started": status.started_at,
      "Data dir": status.paths.data_dir,
      "Database": status.paths.database,
      "Models dir": status.paths.models_dir,
      "Log dir": status.paths.log_dir,
      "Loaded models": status.models.loaded.length ? status.models.loaded.join(", ") : "none",
      "Queue": `${status.queue.waiting} waiting, ${status.queue.running} running`,
    };
    dl.replaceChildren(...Object.entries(items).flatMap(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = String(v);
      return [dt, dd];
    }));
  } catch (err) {
    summary.textContent = "The daemon is not answering: " + err;
  }
}

refresh();
setInterval(refresh, 5000);
