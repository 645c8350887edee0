// The operations centre page: boot, sign-in, layers, the live stream, details with history.
import { ApiError, answerOf, currentCredential, entitiesOfType, getJson, openStream, setContext, setCredential, signedIn } from "./api.js";
import { HISTORY_ATTRIBUTES, lineChart } from "./chart.js";
import { applyStatic, lang, onLanguage, pick, setLanguage, t } from "./i18n.js";
import { CityMap, legendHtml } from "./map.js";
import { AlertsPanel, escapeHtml, renderCatalog, renderCitizen, renderKpis, renderLedger } from "./panels.js";

// index.html asked for the layer list, the base map and the layers before the modules loaded; take its answers.
performance.mark("civicmesh-module-start");
const boot0 = window.civicmeshBoot || {};
const starting = Promise.all([boot0.config ? answerOf(boot0.config) : getJson("/web/config"),
  boot0.basemap ? answerOf(boot0.basemap) : getJson("/web/basemap")]);
// The early layer request carried the credential stored then; it stands for the page only while that holds.
let earlyLayers = boot0.layers || null;
// ?layers=ngsi loads the map the old way, one NGSI-LD query per layer (the benchmark compares the two).
const perTypeQueries = new URLSearchParams(location.search).get("layers") === "ngsi";

// What tests and the benchmark read: when the map was drawn, how far rendering lags behind the server's events.
// serverLags: the server's send time minus the event time (relay and gate); lags: paint time minus the event time.
const stats = { mapReadyMs: null, lags: [], serverLags: [], frameMs: [], rendered: 0, messages: 0, reloads: 0 };
window.civicmesh = { stats, ready: false, live: false };

let config, map, alerts, stream = null, who = null;
let activeTab = "kpis";
const pending = [];
let frameRequested = false;
let everConnected = false;

async function boot() {
  applyStatic();
  for (const b of document.querySelectorAll(".lang button")) b.addEventListener("click", () => setLanguage(b.dataset.lang));
  onLanguage(() => { map?.relabel(); renderLayerList(); alerts?.render(); renderActiveTab(); if (map?.selected) showDetails(map.selected); updateWho(); });
  tickClock();
  setInterval(tickClock, 1000);
  const [cfg, basemap] = await starting;
  config = cfg;
  performance.mark("civicmesh-config-loaded");
  setContext(config.context);
  alerts = new AlertsPanel((id) => showDetails(id));
  map = new CityMap(document.getElementById("map"), basemap, config.layers, (id) => showDetails(id));
  document.getElementById("map-note").textContent = t("mapNote");
  onLanguage(() => { document.getElementById("map-note").textContent = t("mapNote"); showAnonymousHint(); });
  setUpSignIn();
  setUpTabs();
  document.getElementById("details-close").addEventListener("click", () => { document.getElementById("details").hidden = true; map.select(null); });
  // Who is signed in and what the map shows are asked at once; a credential the platform refuses clears itself in
  // identify(), and the layers are asked again, anonymously.
  const credentialAtStart = boot0.credential;
  await Promise.all([signedIn() ? identify() : null, loadLayers()]);
  if (credentialAtStart && !signedIn()) await loadLayers();
  stats.mapReadyMs = performance.now();
  performance.mark("civicmesh-map-drawn");
  window.civicmesh.ready = true;
  window.civicmesh.map = map;
  document.body.dataset.ready = "true";
  connect();
  renderActiveTab();
  setInterval(renderActiveTab, 30000);
}

function tickClock() {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString(lang() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

// Every layer in one request (/web/layers, screened by the gate like an NGSI-LD query for this caller).
async function fetchLayers() {
  const early = earlyLayers;
  earlyLayers = null;
  try {
    if (early && boot0.credential === currentCredential()) return (await answerOf(early)).layers;
    return (await getJson("/web/layers")).layers;
  } catch (error) {
    if (error instanceof ApiError) return Object.fromEntries(config.layers.map((layer) => [layer.id, []]));
    throw error;
  }
}

async function loadLayers() {
  if (perTypeQueries) return loadLayersPerType();
  const layers = await fetchLayers();
  performance.mark("civicmesh-fetched-layers");
  for (const layer of config.layers) drawLayer(layer.id, (layers[layer.id] || []).map(shortNames));
  layersDrawn();
}

function drawLayer(id, entities) {
  if (id === "alerts") {
    alerts.alerts = new Map(entities.map((a) => [a.id, a]));
    alerts.render();
  }
  map.setLayer(id, entities);
}

function layersDrawn() {
  // Alerts mark their sources; draw the sources again now that both are loaded.
  for (const alert of alerts.alerts.values()) map.noteAlert(alert);
  renderLayerList();
  showAnonymousHint();
}

async function loadLayersPerType() {
  const seen = new Set();
  await Promise.all(config.layers.map(async (layer) => {
    // One query per layer: NGSI-LD's type list ("A,B") selects entities of any of the types.
    const parts = await Promise.all([entitiesOfType(layer.types.join(",")).catch((error) => {
      if (error instanceof ApiError) return [];
      throw error;
    })]);
    performance.mark(`civicmesh-fetched-${layer.id}`);
    drawLayer(layer.id, parts.flat().filter((e) => !seen.has(e.id) && seen.add(e.id)).map(shortNames));
  }));
  layersDrawn();
}

// An empty map for an anonymous visitor is the gate at work, not a broken page: say so, and how to sign in.
function showAnonymousHint() {
  const hint = document.getElementById("anonymous-hint");
  const empty = Object.values(map.counts()).every((n) => n === 0);
  hint.hidden = !(config.auth && !signedIn() && empty);
  hint.textContent = t("nothingPublic");
}

function renderLayerList() {
  if (!map) return;
  const counts = map.counts();
  const list = document.getElementById("layer-list");
  const hidden = new Set([...list.querySelectorAll("input:not(:checked)")].map((i) => i.dataset.layer));
  const firstTime = !list.children.length;
  const swatch = { air: "#00e400", traffic: "#ff8c1a", streetlights: "#ffd75e", parking: "#2f8fdf", energy: "#f5b942", bridge: "#d8e3ee", weather: "#9fc9e8", buildings: "#2f4a63", citizen: "#c77dff", alerts: "#ef5b5b" };
  list.innerHTML = config.layers.map((layer) => {
    const on = firstTime ? layer.on : !hidden.has(layer.id);
    return `<li data-layer="${layer.id}" data-count="${counts[layer.id]}"><label><input type="checkbox" data-layer="${layer.id}" ${on ? "checked" : ""}>
      <span class="swatch" style="background:${swatch[layer.id] || "#999"}"></span>${escapeHtml(lang() === "zh" ? layer.zh : layer.en)}</label><span class="n">${counts[layer.id]}</span></li>`;
  }).join("");
  for (const input of list.querySelectorAll("input")) {
    map.setVisible(input.dataset.layer, input.checked);
    input.addEventListener("change", () => map.setVisible(input.dataset.layer, input.checked));
  }
  document.getElementById("legend").innerHTML = legendHtml();
}

function setLive(on) {
  window.civicmesh.live = on;
  const badge = document.getElementById("live");
  badge.classList.toggle("on", on);
  badge.classList.toggle("off", !on);
  badge.dataset.state = on ? "live" : "offline";
  const text = document.getElementById("live-text");
  text.dataset.i18n = on ? "live" : "offline";
  text.textContent = t(text.dataset.i18n);
}

function connect() {
  stream?.close();
  everConnected = false;
  stream = openStream({
    hello: async () => {
      setLive(true);
      if (everConnected) { stats.reloads += 1; await loadLayers(); } // changes may have been missed while away
      everConnected = true;
    },
    entities: (message) => { pending.push(message); schedule(); },
    resync: async () => { stats.reloads += 1; await loadLayers(); },
    closed: () => setLive(false),
    error: () => setLive(false),
  });
}

// Alert attributes come from the core @context; where the demo @context gives a term (category) another IRI, the
// answer keeps the full default-context IRI. Show those under their short names.
// Citizen requests (Smart Data Models IssueTracking) have no terms in the demo @context either.
const LONG_PREFIXES = ["https://uri.etsi.org/ngsi-ld/default-context/", "https://smartdatamodels.org/dataModel.IssueTracking/"];
export function shortNames(entity) {
  for (const key of Object.keys(entity)) {
    const prefix = LONG_PREFIXES.find((p) => key.startsWith(p));
    if (prefix) {
      const short = key.slice(prefix.length);
      if (!(short in entity)) entity[short] = entity[key];
      delete entity[key];
    }
  }
  return entity;
}

function schedule() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(applyPending);
}

let countsDirty = false;
function applyPending() {
  frameRequested = false;
  const began = performance.now();
  const messages = pending.splice(0);
  let detailsTouched = false;
  // Several messages may wait for this frame: draw each entity once, in its newest state (null: deleted).
  const newest = new Map();
  for (const message of messages) {
    for (const entity of message.entities) { newest.delete(entity.id); newest.set(entity.id, entity); }
    for (const id of message.deleted) { newest.delete(id); newest.set(id, null); }
    stats.rendered += message.changes ?? message.entities.length + message.deleted.length;
  }
  for (const [id, entity] of newest) {
    if (entity === null) { map.remove(id); alerts.remove(id); continue; }
    shortNames(entity);
    map.upsert(entity);
    if (entity.type === "Alert") alerts.upsert(entity);
    if (id === map.selected) detailsTouched = true;
  }
  if (newest.size) countsDirty = true;
  // The frame that shows these changes is being painted now: lag = paint time - the server's event time.
  const now = performance.timeOrigin + performance.now();
  for (const message of messages) {
    stats.lags.push(now - message.at);
    stats.serverLags.push(message.sent - message.at);
    stats.messages += 1;
  }
  stats.frameMs.push(performance.now() - began);
  for (const list of [stats.lags, stats.serverLags, stats.frameMs]) if (list.length > 5000) list.splice(0, list.length - 5000);
  if (detailsTouched) showDetails(map.selected, false);
  if (countsDirty) { countsDirty = false; updateCounts(); }
}

function updateCounts() {
  const counts = map.counts();
  for (const li of document.querySelectorAll("#layer-list li")) {
    li.dataset.count = counts[li.dataset.layer];
    li.querySelector(".n").textContent = counts[li.dataset.layer];
  }
}

// -- details with history ------------------------------------------------------------------------------
function formatValue(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object" && "@value" in value) return escapeHtml(value["@value"]); // a typed literal (DateTime)
  if (typeof value === "object" && !Array.isArray(value) && (value.languageMap || value.zh || value.en)) return escapeHtml(pick(value));
  if (Array.isArray(value)) return value.map((v) => formatValue(v)).join(", ");
  if (typeof value === "object" && value.type && value.coordinates) return escapeHtml(value.type);
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${escapeHtml(k)}: ${formatValue(v)}`).join("<br>");
  return escapeHtml(value);
}

async function showDetails(id, withHistory = true) {
  if (!id) return;
  let entity = map.entities.get(id);
  // Opened (not refreshed by a live change): ask for the whole entity, the map holds only what it draws.
  if (!entity || withHistory) {
    try {
      entity = shortNames(await getJson(`/ngsi-ld/v1/entities/${encodeURIComponent(id)}?options=keyValues`, { ngsi: true }));
    } catch (error) {
      entity = entity || { id, type: "?", error: error.message };
    }
  }
  map.select(id);
  const panel = document.getElementById("details");
  panel.hidden = false;
  panel.dataset.id = id;
  document.getElementById("details-title").textContent = map.titleOf(entity);
  const type = String(entity.type).startsWith("http") ? String(entity.type).split("/").pop() : entity.type;
  document.getElementById("details-sub").textContent = `${type} · ${entity.id}`;
  const rows = Object.entries(entity).filter(([k]) => !["id", "type", "location", "@context"].includes(k));
  document.getElementById("details-attrs").innerHTML = `<tbody>${rows.map(([k, v]) => `<tr data-attr="${escapeHtml(k)}"><td>${escapeHtml(k)}</td><td>${formatValue(v)}</td></tr>`).join("")}</tbody>`;
  if (withHistory) await showHistory(entity);
}

async function historyOf(id, attribute, timeproperty) {
  const params = new URLSearchParams({ attrs: attribute, options: "temporalValues", lastN: "60", timeproperty });
  const history = await getJson(`/ngsi-ld/v1/temporal/entities/${encodeURIComponent(id)}?${params}`, { ngsi: true });
  let series = history[attribute];
  if (Array.isArray(series)) series = series.find((s) => !s.datasetId) || series[0];
  return series?.values || [];
}

async function showHistory(entity) {
  const box = document.getElementById("history");
  const attribute = (HISTORY_ATTRIBUTES[entity.type] || []).find((a) => a in entity)
    || Object.keys(entity).find((k) => typeof entity[k] === "number");
  if (!attribute) { box.innerHTML = ""; return; }
  box.innerHTML = `<div class="msg">${t("loading")}</div>`;
  try {
    let values = await historyOf(entity.id, attribute, "observedAt");
    // Readings written without observedAt have no time in that history: draw them by when they were stored.
    if (values.length && values.every(([, at]) => !at)) values = await historyOf(entity.id, attribute, "modifiedAt");
    if (document.getElementById("details").dataset.id !== entity.id) return;
    box.replaceChildren(lineChart(values, `${t("history")} · ${attribute}`, lang() === "zh" ? "zh-CN" : "en-GB"));
    if (!values.length) box.insertAdjacentHTML("beforeend", `<div class="msg">${t("noHistory")}</div>`);
  } catch (error) {
    box.innerHTML = `<div class="msg">${t("historyDenied")}${escapeHtml(error.message)}</div>`;
  }
}

// -- sign-in ------------------------------------------------------------------------------------------
function updateWho() {
  const label = document.getElementById("who");
  if (who) {
    label.removeAttribute("data-i18n");
    label.textContent = `${who.organization || "–"} · ${who.subject}`;
  } else {
    label.dataset.i18n = "anonymous";
    label.textContent = t("anonymous");
  }
  document.getElementById("signout-button").hidden = !who;
  document.getElementById("signin-button").hidden = !!who;
  document.getElementById("apikey").hidden = !!who;
}

async function identify() {
  const banner = document.getElementById("signin-error");
  try {
    who = await getJson("/exchange/whoami");
    if (who.organization && config.auth) {
      try {
        const orgs = await getJson("/exchange/organizations");
        const mine = orgs.find((o) => o.id === who.organization);
        if (mine?.kind === "department" && mine.citizen_department) who.department = mine.citizen_department;
      } catch { /* the organization list is informative only */ }
    }
    banner.hidden = true;
  } catch (error) {
    who = null;
    setCredential("");
    banner.textContent = t("signInFailed") + error.message;
    banner.hidden = false;
  }
  updateWho();
}

function setUpSignIn() {
  document.getElementById("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("apikey");
    setCredential(input.value);
    input.value = "";
    await identify();
    await refreshAll();
  });
  document.getElementById("signout-button").addEventListener("click", async () => {
    setCredential("");
    who = null;
    updateWho();
    await refreshAll();
  });
  updateWho();
}

async function refreshAll() {
  document.getElementById("details").hidden = true;
  map.select(null);
  await loadLayers();
  connect();
  renderActiveTab();
}

// -- tabs ---------------------------------------------------------------------------------------------
function setUpTabs() {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      activeTab = button.dataset.tab;
      for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b === button);
      for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.id !== `tab-${activeTab}`;
      renderActiveTab();
    });
  }
}

function renderActiveTab() {
  const root = document.getElementById(`tab-${activeTab}`);
  if (!root) return;
  if (activeTab === "kpis") renderKpis(root);
  else if (activeTab === "citizen") renderCitizen(root, who);
  else if (activeTab === "ledger") renderLedger(root);
  else if (activeTab === "catalog") renderCatalog(root, who);
}

boot().catch((error) => {
  const banner = document.getElementById("signin-error");
  banner.textContent = `The dashboard could not start: ${error.message}`;
  banner.hidden = false;
  console.error(error);
});
