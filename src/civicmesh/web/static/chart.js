// A small SVG line chart of one attribute's history (temporal API, temporalValues).
const SVG = "http://www.w3.org/2000/svg";

// Which attribute's history tells the story of each type; the first one present is drawn.
export const HISTORY_ATTRIBUTES = {
  AirQualityObserved: ["airQualityIndex", "pm25", "pm10", "no2", "o3"],
  TrafficFlowObserved: ["averageVehicleSpeed", "intensity", "occupancy"],
  OffStreetParking: ["availableSpotNumber", "occupancy"],
  Streetlight: ["illuminanceLevel", "powerConsumption"],
  DeviceMeasurement: ["numValue"],
  SolarEnergy: ["totalActivePower", "energyGenerated"],
  StorageBatteryDevice: ["chargePower", "dischargePower"],
  EVChargingStation: ["availableCapacity", "powerConsumption"],
  WeatherObserved: ["temperature", "relativeHumidity", "precipitation"],
};

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent?.appendChild(node);
  return node;
}

// `values` is [[value, observedAt], ...] as the temporal API's temporalValues gives them.
export function lineChart(values, label, locale) {
  const points = values.filter(([v]) => typeof v === "number").map(([v, at]) => [Date.parse(at), v]).filter(([t]) => !Number.isNaN(t)).sort((a, b) => a[0] - b[0]);
  const W = 360, H = 150, L = 40, R = 8, T = 18, B = 22;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, "data-points": points.length });
  el("text", { x: L, y: 12 }, svg).textContent = label;
  if (!points.length) return svg;
  let [t0, t1] = [points[0][0], points[points.length - 1][0]];
  if (t1 === t0) { t0 -= 60000; t1 += 60000; }
  let lo = Math.min(...points.map((p) => p[1])), hi = Math.max(...points.map((p) => p[1]));
  if (hi === lo) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
  const fmt = (v) => Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1);
  el("text", { x: L - 4, y: y(hi - pad) + 4, "text-anchor": "end" }, svg).textContent = fmt(hi - pad);
  el("text", { x: L - 4, y: y(lo + pad) + 4, "text-anchor": "end" }, svg).textContent = fmt(lo + pad);
  const time = (t) => new Date(t).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  el("text", { x: L, y: H - 6 }, svg).textContent = time(t0);
  el("text", { x: W - R, y: H - 6, "text-anchor": "end" }, svg).textContent = time(t1);
  const line = points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)} ${y(v).toFixed(1)}`).join("");
  el("path", { d: `${line}L${x(t1).toFixed(1)} ${H - B}L${x(t0).toFixed(1)} ${H - B}Z`, class: "area" }, svg);
  el("path", { d: line, class: "line" }, svg);
  for (const [t, v] of points.length <= 40 ? points : []) el("circle", { cx: x(t), cy: y(v), r: 2.2, fill: "#3ec7c2" }, svg);
  return svg;
}
