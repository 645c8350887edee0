// Talking to the platform with the signed-in credential: every panel's request carries it, so the gate decides.
const KEY = "civicmesh.credential";
let credential = sessionStorage.getItem(KEY) || "";
let contextUrl = null;

export function setContext(url) { contextUrl = url; }
export function signedIn() { return credential !== ""; }
export function currentCredential() { return credential; }

export function setCredential(value) {
  credential = (value || "").trim();
  if (credential) sessionStorage.setItem(KEY, credential);
  else sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  if (!credential) return {};
  // API keys go in X-API-Key, anything else is a bearer token (OIDC/JWT), the same headers the API takes.
  return credential.startsWith("cmk_") ? { "X-API-Key": credential } : { Authorization: `Bearer ${credential}` };
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function request(path, { method = "GET", body, ngsi = false, text = false, signal } = {}) {
  const headers = { ...authHeaders(), Accept: text ? "text/plain" : "application/json" };
  if (ngsi && contextUrl) headers.Link = `<${contextUrl}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  return read(response, text);
}

async function read(response, text = false) {
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not a problem document */ }
    throw new ApiError(response.status, problem);
  }
  if (response.status === 204) return null;
  const payload = text ? await response.text() : await response.json();
  return { payload, headers: response.headers };
}

// The JSON of a response fetched elsewhere (index.html's early requests), with the same errors as getJson.
export async function answerOf(pending) { return (await read(await pending)).payload; }

export async function getJson(path, options) { return (await request(path, options)).payload; }

// Every entity of one type, or of any type in a comma-separated list (keyValues), following pages; the gate screens
// each page.
export async function entitiesOfType(type) {
  const out = [];
  const limit = 1000;
  for (let offset = 0; ; offset += limit) {
    const params = new URLSearchParams({ type, options: "keyValues", limit: String(limit), offset: String(offset), count: "true" });
    const { payload, headers } = await request(`/ngsi-ld/v1/entities?${params}`, { ngsi: true });
    out.push(...payload);
    const total = Number(headers.get("NGSILD-Results-Count") || out.length);
    if (payload.length < limit || out.length >= total) return out;
  }
}

// Server-sent events over fetch (EventSource cannot send the credential header), reconnecting with back-off.
export function openStream(handlers) {
  let stopped = false;
  let controller = null;
  let delay = 500;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch("/web/events", { headers: { ...authHeaders(), Accept: "text/event-stream" }, signal: controller.signal });
        if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let kind = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) kind = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (data.length && handlers[kind]) handlers[kind](JSON.parse(data.join("\n")));
          }
        }
      } catch (error) {
        if (stopped) return;
        handlers.error?.(error);
      }
      if (stopped) return;
      handlers.closed?.();
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
  run();
  return { close() { stopped = true; controller?.abort(); } };
}
