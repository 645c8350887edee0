// The city map in SVG: the base map from /web/basemap, one group per layer, one element per entity.
import { pick, t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const M_PER_DEG = 111320;

// China's AQI categories (HJ 633-2012) and their official colours.
export const AQI_BANDS = [[50, "#00e400"], [100, "#ffff00"], [150, "#ff7e00"], [200, "#ff0000"], [300, "#99004c"], [Infinity, "#7e0023"]];
export function aqiCategory(aqi) { return AQI_BANDS.findIndex(([top]) => aqi <= top); }
export function aqiColour(aqi) { return typeof aqi === "number" ? AQI_BANDS[aqiCategory(aqi)][1] : "#7d8d9c"; }
export const SERVICE_REQUEST = "https://smartdatamodels.org/dataModel.IssueTracking/service_requests";
export const SPEED_BANDS = [[15, "#ef3b3b"], [30, "#ff8c1a"], [45, "#f5d142"], [Infinity, "#4cc38a"]];
export function speedColour(speed) { return typeof speed === "number" ? SPEED_BANDS.find(([top]) => speed < top)[1] : "#7d8d9c"; }

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// A screen-pixel line width that follows the page's type size (see CityMap.applyView).
function px(width) { return `stroke-width: calc(${width}px * var(--ui, 1))`; }

function number(value) {
  if (Array.isArray(value)) value = value[0];
  return typeof value === "number" ? value : null;
}

function firstPosition(geometry) {
  let c = geometry?.coordinates;
  while (Array.isArray(c) && Array.isArray(c[0])) c = c[0];
  return Array.isArray(c) ? c : null;
}

function allPositions(geometry) {
  const out = [];
  const walk = (c) => { if (typeof c[0] === "number") out.push(c); else c.forEach(walk); };
  if (geometry?.coordinates) walk(geometry.coordinates);
  return out;
}

export class CityMap {
  constructor(container, basemap, layers, onSelect) {
    this.container = container;
    this.layers = layers;
    this.onSelect = onSelect;
    this.typeToLayer = new Map();
    for (const layer of layers) for (const type of layer.types) this.typeToLayer.set(type, layer.id);
    this.entities = new Map();  // id -> entity (keyValues)
    this.nodes = new Map();     // id -> SVG element
    this.alertedSources = new Map(); // entity id -> severity of its newest alert
    this.selected = null;
    const [west, south, east, north] = basemap.bbox;
    this.origin = [(west + east) / 2, (south + north) / 2];
    this.kx = M_PER_DEG * Math.cos(this.origin[1] * Math.PI / 180);
    const [x0, y0] = this.project([west, north]);
    const [x1, y1] = this.project([east, south]);
    this.full = { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
    // Start on where the city's entities are (the base map's box is a little larger, and the map covers its box).
    this.view = { ...this.full, y: this.full.y - (this.full.y + this.full.h / 2) + this.project([0, 30.2225])[1] };
    this.svg = el("svg", { role: "img", preserveAspectRatio: "xMidYMid slice" });
    container.appendChild(this.svg);
    this.base = el("g", { class: "base" }, this.svg);
    this.groups = new Map();
    for (const id of ["buildings", "traffic", "bridge", "streetlights", "parking", "energy", "weather", "air", "citizen", "alerts"]) {
      this.groups.set(id, el("g", { class: `layer layer-${id}`, "data-layer": id }, this.svg));
    }
    for (const layer of layers) if (!this.groups.has(layer.id)) this.groups.set(layer.id, el("g", { class: `layer layer-${layer.id}`, "data-layer": layer.id }, this.svg));
    this.labels = el("g", { class: "labels" }, this.svg);
    this.drawBase(basemap);
    this.applyView();
    this.enablePanZoom();
    new ResizeObserver(() => this.applyView()).observe(container);
  }

  project([lon, lat]) { return [(lon - this.origin[0]) * this.kx, -(lat - this.origin[1]) * M_PER_DEG]; }

  path(coordinates, close = false) {
    return coordinates.map((c, i) => { const [x, y] = this.project(c); return `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`; }).join("") + (close ? "Z" : "");
  }

  drawBase(basemap) {
    this.baseFeatures = basemap.features;
    for (const f of basemap.features) {
      const kind = f.properties.kind;
      if (kind === "district" || kind === "river") {
        const slug = f.id.split(":")[1];
        el("path", { d: f.geometry.coordinates.map((ring) => this.path(ring, true)).join(""), class: `base-${kind} ${slug}`, "data-base": f.id }, this.base);
      } else if (kind === "road") {
        const width = { trunk: 7, primary: 6, secondary: 4.5, tertiary: 3.5 }[f.properties.class] || 3;
        el("path", { d: this.path(f.geometry.coordinates), class: "base-road", style: px(width), "vector-effect": "non-scaling-stroke", "data-base": f.id }, this.base);
      }
    }
    this.drawLabels();
  }

  drawLabels() {
    this.labels.replaceChildren();
    this.labelNodes = [];
    for (const f of this.baseFeatures) {
      const kind = f.properties.kind;
      let at;
      if (kind === "district") {
        // Corners the layer list and the details card leave free.
        at = f.id.endsWith("binjiang") ? [120.176, 30.1915] : [120.236, 30.2555];
      } else if (kind === "river") {
        at = [120.2435, 30.2389];
      } else if (kind === "road" && ["primary", "trunk"].includes(f.properties.class) && !f.properties.bridge) {
        const c = f.geometry.coordinates;
        at = c[Math.floor(c.length / 2)];
      } else continue;
      const [x, y] = this.project(at);
      const text = el("text", { x, y, class: `base-label ${kind}`, "text-anchor": "middle" }, this.labels);
      text.textContent = pick(f.properties.name);
      text.dataset.px = kind === "district" ? 22 : kind === "river" ? 20 : 12;
      this.labelNodes.push([text, f]);
    }
    this.scaleLabels();
  }

  relabel() {
    for (const [node, f] of this.labelNodes) node.textContent = pick(f.properties.name);
    for (const node of this.nodes.values()) node.querySelector("title") && (node.querySelector("title").textContent = this.titleOf(this.entities.get(node.dataset.id)));
  }

  unitsPerPixel() {
    const w = this.container.clientWidth || 1, h = this.container.clientHeight || 1;
    // The map covers its box ("slice"): the smaller ratio is the one on screen.
    return Math.min(this.view.w / w, this.view.h / h);
  }

  applyView() {
    const v = this.view;
    this.svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    // Markers, labels and line widths grow with the page's type size (it follows the viewport), so a wall display
    // shows them as large, relative to the screen, as a laptop does.
    this.ui = (parseFloat(getComputedStyle(document.documentElement).fontSize) || 12.5) / 12.5;
    this.svg.style.setProperty("--ui", this.ui.toFixed(3));
    this.scale = this.unitsPerPixel() * this.ui;
    for (const node of this.nodes.values()) if (node.dataset.x !== undefined) this.place(node);
    this.scaleLabels();
  }

  scaleLabels() {
    if (!this.labelNodes) return;
    const s = this.unitsPerPixel() * (this.ui || 1);
    for (const [node] of this.labelNodes) node.style.fontSize = `${Number(node.dataset.px) * s}px`;
    for (const node of this.labels.querySelectorAll("text")) node.style.strokeWidth = `${3 * s}px`;
  }

  place(node) {
    node.setAttribute("transform", `translate(${node.dataset.x} ${node.dataset.y}) scale(${this.scale})`);
  }

  enablePanZoom() {
    const svg = this.svg;
    svg.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = svg.getBoundingClientRect();
      const s = this.unitsPerPixel();
      const cx = this.view.x + (event.clientX - rect.left - (rect.width - this.view.w / s) / 2) * s;
      const cy = this.view.y + (event.clientY - rect.top - (rect.height - this.view.h / s) / 2) * s;
      const factor = Math.exp(event.deltaY * 0.0015);
      const w = Math.min(this.full.w * 1.5, Math.max(this.full.w / 25, this.view.w * factor));
      const k = w / this.view.w;
      this.view = { x: cx - (cx - this.view.x) * k, y: cy - (cy - this.view.y) * k, w, h: this.view.h * k };
      this.applyView();
    }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, view: { ...this.view }, moved: false };
    });
    window.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; svg.classList.add("dragging"); }
      if (!drag.moved) return;
      const s = this.unitsPerPixel();
      this.view = { ...drag.view, x: drag.view.x - dx * s, y: drag.view.y - dy * s };
      this.applyView();
    });
    window.addEventListener("pointerup", () => {
      if (drag?.moved) this.suppressClick = true;
      drag = null;
      svg.classList.remove("dragging");
      setTimeout(() => { this.suppressClick = false; }, 0);
    });
  }

  layerOf(entity) { return this.typeToLayer.get(entity.type); }

  titleOf(entity) {
    if (!entity) return "";
    if (document.documentElement.lang.startsWith("zh") && typeof entity.alternateName === "string") return entity.alternateName;
    return pick(entity.name) || entity.service_name || entity.id;
  }

  // Replace a whole layer's entities (first load, reload after reconnect).
  setLayer(layerId, entities) {
    const group = this.groups.get(layerId);
    for (const [id, node] of [...this.nodes]) if (node.parentNode === group) { this.nodes.delete(id); this.entities.delete(id); }
    group.replaceChildren();
    for (const entity of entities) this.upsert(entity);
  }

  upsert(entity) {
    const layerId = this.layerOf(entity);
    if (!layerId) return false;
    if (entity.type === "Alert" && entity.alertSource) this.noteAlert(entity);
    this.entities.set(entity.id, entity);
    const node = this.render(entity, layerId);
    if (!node) return false;
    const old = this.nodes.get(entity.id);
    if (old) old.replaceWith(node); else this.groups.get(layerId).appendChild(node);
    this.nodes.set(entity.id, node);
    if (this.selected === entity.id) node.classList.add("selected");
    return true;
  }

  remove(id) {
    this.nodes.get(id)?.remove();
    this.nodes.delete(id);
    this.entities.delete(id);
  }

  noteAlert(alert) {
    const source = alert.alertSource;
    if (alert.acknowledged) this.alertedSources.delete(source); else this.alertedSources.set(source, alert.severity);
    const sourceEntity = this.entities.get(source);
    if (sourceEntity) this.upsert(sourceEntity);
  }

  counts() {
    const counts = {};
    for (const layer of this.layers) counts[layer.id] = 0;
    for (const entity of this.entities.values()) { const l = this.layerOf(entity); if (l && this.nodes.has(entity.id)) counts[l] += 1; }
    return counts;
  }

  setVisible(layerId, visible) { this.groups.get(layerId).style.display = visible ? "" : "none"; }

  select(id) {
    if (this.selected) this.nodes.get(this.selected)?.classList.remove("selected");
    this.selected = id;
    if (id) this.nodes.get(id)?.classList.add("selected");
  }

  marker(entity, layerId, position) {
    const [x, y] = this.project(position);
    const g = el("g", { class: `feature marker ${layerId}`, "data-id": entity.id, "data-type": entity.type });
    g.dataset.x = x.toFixed(1);
    g.dataset.y = y.toFixed(1);
    this.place(g);
    return g;
  }

  finish(node, entity) {
    el("title", {}, node).textContent = this.titleOf(entity);
    node.addEventListener("click", (event) => {
      event.stopPropagation();
      if (!this.suppressClick) this.onSelect(entity.id);
    });
    return node;
  }

  render(entity, layerId) {
    const geometry = entity.location;
    const alerted = this.alertedSources.get(entity.id);
    if (!geometry) return null;
    if (entity.type === "TrafficFlowObserved" || entity.type === "Bridge") {
      const points = allPositions(geometry).map((c) => this.project(c));
      if (points.length < 2) return null;
      const g = el("g", { class: `feature line ${layerId}`, "data-id": entity.id, "data-type": entity.type });
      let d;
      if (entity.type === "TrafficFlowObserved") {
        // Two directions share a segment: draw each a little to its right, as drivers see it (right-hand traffic).
        const [a, b] = [points[0], points[points.length - 1]];
        const len = Math.hypot(b[0] - a[0], b[1] - a[1]) || 1;
        const nx = -(b[1] - a[1]) / len * 14, ny = (b[0] - a[0]) / len * 14;
        d = points.map(([x, y], i) => `${i ? "L" : "M"}${(x - nx).toFixed(1)} ${(y - ny).toFixed(1)}`).join("");
        const speed = number(entity.averageVehicleSpeed);
        g.dataset.speed = speed ?? "";
        el("path", { d, class: "traffic-line", stroke: speedColour(speed), style: px(4), "vector-effect": "non-scaling-stroke" }, g);
      } else {
        d = points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`).join("");
        el("path", { d, fill: "none", stroke: alerted ? "#ef5b5b" : "#d8e3ee", style: px(10), "stroke-linecap": "round", "vector-effect": "non-scaling-stroke", opacity: 0.85 }, g);
        el("path", { d, fill: "none", stroke: "#0b1622", style: px(2), "stroke-dasharray": "6 6", "vector-effect": "non-scaling-stroke" }, g);
      }
      return this.finish(g, entity);
    }
    if (entity.type === "Building" && geometry.type.endsWith("Polygon")) {
      const rings = geometry.type === "Polygon" ? geometry.coordinates : geometry.coordinates.flat();
      const g = el("g", { class: `feature area ${layerId}`, "data-id": entity.id, "data-type": entity.type });
      el("path", { d: rings.map((r) => this.path(r, true)).join(""), fill: "#2f4a63", stroke: "#4c6d8c", "stroke-width": 1, "vector-effect": "non-scaling-stroke" }, g);
      return this.finish(g, entity);
    }
    const position = geometry.type === "Point" ? geometry.coordinates : firstPosition(geometry);
    if (!position) return null;
    const g = this.marker(entity, layerId, position);
    switch (entity.type) {
      case "AirQualityObserved": {
        const aqi = number(entity.airQualityIndex);
        g.dataset.aqi = aqi ?? "";
        g.dataset.category = aqi === null ? "" : aqiCategory(aqi);
        el("circle", { r: 13, fill: aqiColour(aqi), stroke: "#0b1622", "stroke-width": 2 }, g);
        const label = el("text", { y: 4, "text-anchor": "middle", "font-size": 11, "font-weight": 700, fill: aqi !== null && aqi > 150 ? "#fff" : "#111" }, g);
        label.textContent = aqi ?? "?";
        break;
      }
      case "Streetlight": {
        const on = entity.powerState === "on";
        const broken = entity.status && entity.status !== "ok";
        g.dataset.state = broken ? "fault" : on ? "on" : "off";
        el("circle", { r: on ? 4 : 3, fill: broken ? "#ef5b5b" : on ? "#ffd75e" : "#6d8398", stroke: "#0b1622", "stroke-width": 1 }, g);
        break;
      }
      case "OffStreetParking": {
        const free = number(entity.availableSpotNumber), total = number(entity.totalSpotNumber);
        const share = free !== null && total ? free / total : null;
        g.dataset.available = free ?? "";
        el("rect", { x: -9, y: -9, width: 18, height: 18, rx: 4, fill: share === null ? "#7d8d9c" : share > 0.3 ? "#2f8fdf" : share > 0.1 ? "#f5b942" : "#ef5b5b", stroke: "#0b1622", "stroke-width": 1.5 }, g);
        el("text", { y: 4.5, "text-anchor": "middle", "font-size": 12, "font-weight": 700, fill: "#fff" }, g).textContent = "P";
        break;
      }
      case "SolarEnergy": {
        g.dataset.power = number(entity.totalActivePower) ?? "";
        el("rect", { x: -7, y: -7, width: 14, height: 14, transform: "rotate(45)", fill: "#f5b942", stroke: "#0b1622", "stroke-width": 1.5 }, g);
        break;
      }
      case "StorageBatteryDevice": {
        el("rect", { x: -8, y: -5, width: 16, height: 10, rx: 2, fill: "#4cc38a", stroke: "#0b1622", "stroke-width": 1.5 }, g);
        el("rect", { x: 8, y: -2, width: 2.5, height: 4, fill: "#4cc38a" }, g);
        break;
      }
      case "EVChargingStation": {
        el("circle", { r: 8, fill: "#4da3ff", stroke: "#0b1622", "stroke-width": 1.5 }, g);
        el("path", { d: "M1 -5 L-3 1 L0 1 L-1 5 L3 -1 L0 -1 Z", fill: "#fff" }, g);
        break;
      }
      case "DeviceMeasurement": {
        g.dataset.value = number(entity.numValue) ?? "";
        g.dataset.alert = alerted || "";
        el("path", { d: "M0 -8 L7 5 L-7 5 Z", fill: alerted ? "#ef5b5b" : "#3ec7c2", stroke: "#0b1622", "stroke-width": 1.5 }, g);
        break;
      }
      case "WeatherObserved": {
        el("circle", { r: 8, fill: "#9fc9e8", stroke: "#0b1622", "stroke-width": 1.5 }, g);
        el("text", { y: 3.5, "text-anchor": "middle", "font-size": 10, "font-weight": 700, fill: "#0b1622" }, g).textContent = "W";
        break;
      }
      case SERVICE_REQUEST: {
        // A citizen's request (Open311 / 12345): a speech bubble, grey once closed.
        g.dataset.status = entity.status || "";
        el("path", { d: "M-8 -8 H8 V4 H-1 L-5 8 V4 H-8 Z", fill: entity.status === "closed" ? "#7d8d9c" : "#c77dff", stroke: "#0b1622", "stroke-width": 1.5, "stroke-linejoin": "round" }, g);
        break;
      }
      case "Alert": {
        g.dataset.severity = entity.severity || "";
        // A ring around the source (it stays clickable) and a badge beside it.
        if (!entity.acknowledged) el("circle", { r: 18, class: "alert-ring", "pointer-events": "none" }, g);
        el("circle", { cx: 14, cy: -14, r: 7, fill: entity.acknowledged ? "#7d8d9c" : "#ef5b5b", stroke: "#fff", "stroke-width": 1.5 }, g);
        el("text", { x: 14, y: -10.5, "text-anchor": "middle", "font-size": 10, "font-weight": 700, fill: "#fff" }, g).textContent = "!";
        break;
      }
      default:
        el("circle", { r: 5, fill: "#b8c7d6" }, g);
    }
    return this.finish(g, entity);
  }
}

export function legendHtml() {
  const aqi = AQI_BANDS.map(([, colour], i) => `<div class="row"><span class="swatch" style="background:${colour}"></span>${t(`aqi${i}`)}</div>`).join("");
  const speed = [["< 15", SPEED_BANDS[0][1]], ["15–30", SPEED_BANDS[1][1]], ["30–45", SPEED_BANDS[2][1]], ["≥ 45", SPEED_BANDS[3][1]]]
    .map(([label, colour]) => `<span class="row" style="display:inline-flex;margin-right:.6em"><span class="swatch" style="background:${colour}"></span>${label}</span>`).join("");
  return `<div>${t("aqiLegend")}</div>${aqi}<div style="margin-top:.4em">${t("trafficLegend")}</div><div>${speed}</div>`;
}
