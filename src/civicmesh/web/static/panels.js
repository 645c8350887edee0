// The side panels: alerts, synergy KPIs, citizen requests, ledger, catalog. Each fetches with the signed-in
// credential and shows what the gate answers, including its refusals.
import { ApiError, getJson, request, signedIn } from "./api.js";
import { lang, pick, t } from "./i18n.js";

const SEVERITY_RANK = { critical: 4, high: 3, medium: 2, low: 1, informational: 0 };

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function refusal(error) {
  if (error instanceof ApiError && (error.status === 401 || (!signedIn() && error.status === 403))) return `<p class="empty">${t("signInToSee")}</p>`;
  if (error instanceof ApiError) return `<p class="empty">${t("notAllowed")}${escapeHtml(error.message)}</p>`;
  return `<p class="empty">${escapeHtml(error.message)}</p>`;
}

// One formatter per language: building an Intl formatter per call is what makes long lists slow.
const formatters = {};
function when(text) {
  const at = Date.parse(text);
  if (Number.isNaN(at)) return escapeHtml(text || "");
  const code = lang() === "zh" ? "zh-CN" : "en-GB";
  formatters[code] ??= new Intl.DateTimeFormat(code, { dateStyle: "short", timeStyle: "medium", hour12: false });
  return formatters[code].format(new Date(at));
}
const ALERTS_SHOWN = 100;

function percent(value) { return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`; }

// -- alerts ---------------------------------------------------------------------------------------------
export class AlertsPanel {
  constructor(onShow) {
    this.alerts = new Map();
    this.onShow = onShow;
    this.list = document.getElementById("alerts-list");
    this.list.addEventListener("click", (event) => this.click(event));
  }

  async load() {
    this.alerts.clear();
    try {
      const params = new URLSearchParams({ type: "Alert", options: "keyValues", limit: "200", orderBy: "dateIssued;desc" });
      for (const alert of await getJson(`/ngsi-ld/v1/entities?${params}`, { ngsi: true })) this.alerts.set(alert.id, alert);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
    this.render();
  }

  // Live alerts can arrive by the hundred a second: draw the list at most once per frame.
  upsert(alert) { this.alerts.set(alert.id, alert); this.scheduleRender(); }
  remove(id) { if (this.alerts.delete(id)) this.scheduleRender(); }

  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => { this.renderQueued = false; this.render(); });
  }

  render() {
    const items = [...this.alerts.values()].sort((a, b) => String(b.dateIssued || "").localeCompare(String(a.dateIssued || ""))
      || (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0));
    document.getElementById("alerts-count").textContent = items.filter((a) => !a.acknowledged).length;
    document.getElementById("alerts-empty").hidden = items.length > 0;
    this.list.innerHTML = items.slice(0, ALERTS_SHOWN).map((a) => `
      <li class="${a.acknowledged ? "acknowledged" : ""}" data-id="${escapeHtml(a.id)}" data-severity="${escapeHtml(a.severity)}">
        <span class="sev ${escapeHtml(a.severity)}">${escapeHtml(t(a.severity) || a.severity)}</span>
        <span class="desc">${escapeHtml(a.description || a.subCategory || a.id)}</span>
        ${a.acknowledged ? `<span class="tag ok">${t("acknowledged")}</span>` : `<button type="button" class="ack" data-ack="${escapeHtml(a.id)}">${t("acknowledge")}</button>`}
        <span class="meta">${when(a.dateIssued)} · ${escapeHtml(a.category || "")} · <a href="#" data-show="${escapeHtml(a.alertSource || "")}" style="color:inherit">${escapeHtml((a.alertSource || "").split(":").pop())}</a>${a.acknowledgedBy ? ` · ${escapeHtml(a.acknowledgedBy)}` : ""}</span>
      </li>`).join("");
  }

  async click(event) {
    const ack = event.target.closest("[data-ack]");
    if (ack) {
      ack.disabled = true;
      try {
        const done = await getJson(`/alerts/${encodeURIComponent(ack.dataset.ack)}/acknowledge`, { method: "POST", body: {} });
        this.upsert({ ...this.alerts.get(done.id), ...done });
      } catch (error) {
        ack.disabled = false;
        ack.title = error.message;
        ack.textContent = `${t("acknowledge")} ✗`;
      }
      return;
    }
    const show = event.target.closest("[data-show]");
    if (show) { event.preventDefault(); this.onShow(show.dataset.show); }
  }
}

// -- synergy KPIs ---------------------------------------------------------------------------------------
export async function renderKpis(root) {
  try {
    const k = await getJson("/exchange/kpis");
    const tiles = [
      [percent(k.data_sharing_rate), t("dataSharingRate")],
      [k.active_agreements, t("activeAgreements")],
      [k.response_time_hours?.median ?? "–", t("responseMedian")],
      [k.reads_served_across_organizations, t("crossReads")],
      [k.products, t("products")],
      [k.access_requests, t("accessRequests")],
    ];
    const used = (k.most_used_products || []).map((p) => `<tr><td>${escapeHtml(pick(p.title) || p.product)}</td><td>${p.reads}</td></tr>`).join("");
    root.innerHTML = `<h2>${t("synergy")}</h2><div class="kpis" id="kpis">${tiles.map(([v, l]) => `<div class="kpi"><div class="v">${escapeHtml(v)}</div><div class="l">${l}</div></div>`).join("")}</div>
      ${used ? `<h3>${t("mostUsed")}</h3><table class="list"><tbody>${used}</tbody></table>` : ""}`;
  } catch (error) {
    root.innerHTML = `<h2>${t("synergy")}</h2>${refusal(error)}`;
  }
}

// -- citizen requests -----------------------------------------------------------------------------------
export async function renderCitizen(root, who) {
  let html = `<h2>${t("citizen")}</h2>`;
  try {
    let rows;
    const department = who?.department;
    if (department) {
      rows = (await getJson(`/citizen/departments/${encodeURIComponent(department)}/requests`)).map((r) => ({ ...r, shownState: r.state }));
    } else {
      rows = (await getJson("/open311/v2/requests.json")).map((r) => ({ ...r, shownState: r.status }));
    }
    const now = Date.now();
    rows.sort((a, b) => String(b.requested_datetime).localeCompare(String(a.requested_datetime)));
    const body = rows.slice(0, 60).map((r) => {
      const due = Date.parse(r.expected_datetime);
      const open = !["closed", "resolved"].includes(r.shownState);
      const overdue = open && !Number.isNaN(due) && due < now;
      return `<tr data-request="${escapeHtml(r.service_request_id)}"><td>${escapeHtml(r.service_request_id)}</td><td>${escapeHtml(r.service_name || r.service_code)}</td>
        <td>${escapeHtml(r.shownState)}</td><td>${escapeHtml(r.agency_responsible || "–")}</td>
        <td>${r.expected_datetime ? when(r.expected_datetime) : "–"} ${open && r.expected_datetime ? `<span class="tag ${overdue ? "overdue" : "ok"}">${overdue ? t("overdue") : t("onTime")}</span>` : ""}</td></tr>`;
    }).join("");
    html += rows.length ? `<h3>${t("requests")} (${rows.length})</h3><table class="list" id="citizen-requests"><thead><tr><th>#</th><th></th><th>${t("state")}</th><th>${t("department")}</th><th>${t("deadline")}</th></tr></thead><tbody>${body}</tbody></table>`
      : `<p class="empty">${t("noRequests")}</p>`;
  } catch (error) {
    html += refusal(error);
  }
  try {
    const kpis = await getJson("/citizen/kpis");
    const rows = kpis.departments.map((d) => `<tr><td>${escapeHtml(pick(d.name) || d.department)}</td><td>${percent(d.response_rate)}</td><td>${percent(d.resolution_rate)}</td><td>${percent(d.satisfaction_rate)}</td><td>${d.overdue}</td></tr>`).join("");
    html += `<h3>${t("departments")} · ${escapeHtml(kpis.month)}</h3><table class="list" id="citizen-departments"><thead><tr><th>${t("department")}</th><th>${t("responseRate")}</th><th>${t("resolutionRate")}</th><th>${t("satisfactionRate")}</th><th>${t("overdue")}</th></tr></thead><tbody>${rows}</tbody></table>`;
  } catch (error) {
    html += `<h3>${t("departments")}</h3>${refusal(error)}`;
  }
  root.innerHTML = html;
}

// -- ledger ---------------------------------------------------------------------------------------------
export async function renderLedger(root) {
  let html = `<h2>${t("ledger")}</h2>`;
  try {
    const text = (await request("/ledger/checkpoint", { text: true })).payload;
    const [body, signatures = ""] = text.split("\n\n");
    const [origin, size, root64] = body.split("\n");
    const signers = signatures.split("\n").filter((l) => l.startsWith("— ") || l.startsWith("\u2014 ")).map((l) => l.slice(2).split(" ")[0]);
    html += `<h3>${t("checkpoint")}</h3><table class="attrs" id="ledger-checkpoint"><tbody>
      <tr><td>origin</td><td class="mono">${escapeHtml(origin)}</td></tr>
      <tr><td>${t("treeSize")}</td><td>${escapeHtml(size)}</td></tr>
      <tr><td>${t("rootHash")}</td><td class="mono">${escapeHtml(root64)}</td></tr>
      <tr><td>${t("signatures")}</td><td>${signers.map(escapeHtml).join("<br>")}</td></tr></tbody></table>`;
  } catch (error) {
    html += refusal(error);
  }
  try {
    const witnesses = await getJson("/ledger/witnesses");
    const list = Array.isArray(witnesses) ? witnesses : witnesses.witnesses || [];
    html += `<h3>${t("cosigners")}</h3>` + (list.length ? `<table class="list" id="ledger-witnesses"><tbody>${list.map((w) => `<tr><td>${escapeHtml(w.name)}</td><td>${t("lastCosigned")}: ${escapeHtml(w.last_size ?? w.size ?? "–")}</td></tr>`).join("")}</tbody></table>` : `<p class="empty">${t("noWitnesses")}</p>`);
  } catch (error) {
    html += refusal(error);
  }
  root.innerHTML = html;
}

// -- catalog --------------------------------------------------------------------------------------------
export async function renderCatalog(root, who) {
  let html = `<h2>${t("catalog")}</h2>`;
  try {
    const products = await getJson("/exchange/catalog");
    let mine = new Map();
    if (who?.organization) {
      try {
        for (const n of await getJson("/exchange/requests")) if (n.consumer === who.organization) mine.set(n.product, n.state);
      } catch { mine = new Map(); }
    }
    html += who?.organization ? `<label class="note">${t("purpose")} <input id="purpose" value="city-operations" size="16"></label>` : `<p class="note">${t("signInToRequest")}</p>`;
    html += products.length ? products.map((p) => {
      const state = mine.get(p.id);
      const own = who?.organization && p.provider === who.organization;
      const action = !who?.organization || own ? "" : state ? `<span class="tag ${state === "AGREED" ? "ok" : ""}">${escapeHtml(state)}</span>`
        : `<button type="button" class="primary" data-request-access="${escapeHtml(p.id)}">${t("requestAccess")}</button>`;
      return `<div class="product" data-product="${escapeHtml(p.id)}"><span class="t">${escapeHtml(pick(p.title) || p.id)}</span>${action}
        <span class="d">${escapeHtml(pick(p.description) || "")} · ${t("provider")}: ${escapeHtml(p.provider)} · ${escapeHtml(p.sector || "")}${p.public ? " · open data" : ""}</span></div>`;
    }).join("") : `<p class="empty">${t("noProducts")}</p>`;
  } catch (error) {
    html += refusal(error);
  }
  root.innerHTML = html;
  root.onclick = async (event) => {
    const button = event.target.closest("[data-request-access]");
    if (!button) return;
    button.disabled = true;
    const purpose = root.querySelector("#purpose")?.value || "city-operations";
    try {
      const made = await getJson("/exchange/requests", { method: "POST", body: { product: button.dataset.requestAccess, purpose } });
      button.replaceWith(Object.assign(document.createElement("span"), { className: "tag", textContent: made.state }));
    } catch (error) {
      button.disabled = false;
      button.title = error.message;
      button.textContent = `${t("requestAccess")} ✗`;
    }
  };
}
