// The dashboard's words in Chinese and English; the choice is remembered in localStorage.
const WORDS = {
  title: ["城市运行中心", "City operations centre"],
  subtitle: ["杭州 · 滨江 实时", "Binjiang · Hangzhou, live"],
  connecting: ["连接中", "connecting"],
  live: ["实时", "live"],
  offline: ["已断开，重连中", "offline, reconnecting"],
  anonymous: ["匿名访问", "anonymous"],
  apiKeyPlaceholder: ["API 密钥或令牌", "API key or bearer token"],
  signIn: ["登录", "Sign in"],
  signOut: ["退出", "Sign out"],
  signInFailed: ["登录失败：", "Sign-in failed: "],
  layers: ["图层", "Layers"],
  alerts: ["告警", "Alerts"],
  noAlerts: ["暂无告警", "No alerts"],
  acknowledge: ["确认", "Acknowledge"],
  acknowledged: ["已确认", "acknowledged"],
  synergy: ["协同指标", "Synergy"],
  citizen: ["市民诉求", "Citizens"],
  ledger: ["可信账本", "Ledger"],
  catalog: ["数据目录", "Catalog"],
  signInToSee: ["登录后可见（由访问网关决定）。", "Sign in to see this (the access gate decides)."],
  notAllowed: ["访问网关不允许：", "The access gate does not allow this: "],
  dataSharingRate: ["数据共享率", "Data sharing rate"],
  activeAgreements: ["生效协议", "Active agreements"],
  responseMedian: ["申请响应（中位，小时）", "Request response (median, h)"],
  crossReads: ["跨组织读取", "Cross-organization reads"],
  products: ["数据产品", "Data products"],
  accessRequests: ["访问申请", "Access requests"],
  mostUsed: ["最常用产品", "Most used products"],
  requests: ["诉求", "Requests"],
  state: ["状态", "State"],
  department: ["部门", "Department"],
  deadline: ["办理时限", "Deadline"],
  overdue: ["超期", "overdue"],
  onTime: ["未超期", "on time"],
  departments: ["部门绩效", "Departments"],
  responseRate: ["响应率", "Response"],
  resolutionRate: ["解决率", "Resolution"],
  satisfactionRate: ["满意率", "Satisfaction"],
  noRequests: ["暂无诉求", "No requests"],
  checkpoint: ["最新检查点", "Latest checkpoint"],
  treeSize: ["日志条目", "Entries"],
  rootHash: ["根哈希", "Root hash"],
  signatures: ["签名", "Signatures"],
  cosigners: ["见证方", "Cosigners"],
  lastCosigned: ["最近见证规模", "last cosigned size"],
  noWitnesses: ["尚无见证方", "No witnesses registered"],
  requestAccess: ["申请访问", "Request access"],
  requested: ["已申请", "requested"],
  purpose: ["用途", "Purpose"],
  signInToRequest: ["登录组织账号后可申请访问。", "Sign in as an organization to request access."],
  noProducts: ["目录为空", "The catalog is empty"],
  provider: ["提供方", "Provider"],
  history: ["历史", "History"],
  noHistory: ["暂无历史数据", "No history yet"],
  historyDenied: ["历史数据：", "History: "],
  attributes: ["属性", "Attributes"],
  features: ["个", "features"],
  mapNote: ["底图：项目自有 GeoJSON（区划、主干道、钱塘江），无在线瓦片。滚轮缩放，拖动平移。",
            "Base map: the project's own GeoJSON (districts, main roads, the river), no internet tiles. Wheel zooms, drag pans."],
  aqiLegend: ["空气质量指数（HJ 633）", "Air quality index (HJ 633)"],
  aqi0: ["优", "Excellent"], aqi1: ["良", "Good"], aqi2: ["轻度污染", "Lightly polluted"],
  aqi3: ["中度污染", "Moderately polluted"], aqi4: ["重度污染", "Heavily polluted"], aqi5: ["严重污染", "Severely polluted"],
  trafficLegend: ["车速 km/h", "Speed km/h"],
  critical: ["严重", "critical"], high: ["高", "high"], medium: ["中", "medium"], low: ["低", "low"],
  informational: ["提示", "info"],
  loading: ["加载中…", "loading…"],
  nothingPublic: ["匿名用户看不到非开放数据。请登录：`make run` 首次启动时平台管理员密钥写在 civicmesh-data/exchange-bootstrap-admin.key。",
                  "Nothing here is open data for anonymous callers. Sign in: on the first `make run` the platform-admin key is written to civicmesh-data/exchange-bootstrap-admin.key."],
};

const listeners = [];
let current = localStorage.getItem("civicmesh.lang") || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");

export function lang() { return current; }

export function t(key) {
  const pair = WORDS[key];
  if (!pair) return key;
  return current === "zh" ? pair[0] : pair[1];
}

// A value that is {zh, en} (or a languageMap) in the current language.
export function pick(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const map = value.languageMap || value;
    return map[current] || map.en || map.zh || Object.values(map)[0];
  }
  return value;
}

export function onLanguage(fn) { listeners.push(fn); }

export function setLanguage(code) {
  current = code === "zh" ? "zh" : "en";
  localStorage.setItem("civicmesh.lang", current);
  applyStatic();
  for (const fn of listeners) fn(current);
}

export function applyStatic(root = document) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  document.title = `civicmesh · ${t("title")}`;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const b of document.querySelectorAll(".lang button")) b.classList.toggle("active", b.dataset.lang === current);
}
