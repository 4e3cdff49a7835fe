// A small client for the OpenStack Neutron API (v2.0), as `palisade-openstack
// watch` polls it: list security groups, ports and address groups, following
// Neutron's pagination, authenticated by a static token or by Keystone v3
// password auth. No dependencies beyond the global fetch.
//
// Decisions:
// - Every failure at this boundary (HTTP status, network, timeout, invalid
//   JSON, Keystone) is a NeutronApiError with a one-line message. A response
//   that is JSON but not Neutron-shaped gives the TranslateError of the
//   parse*File checks instead (field names, same as for files).
// - Messages never hold the password or a token: every message goes through
//   a redaction of the secrets this client knows (also fetch's own error
//   texts, which can echo header values, and response bodies, which a proxy
//   could echo). Response bodies are cut to 200 characters, control
//   characters replaced, so a message stays on one line.
// - Pagination: the first request is `?limit=<pageSize>`; a `rel: next` link
//   is followed by taking its query (marker, limit, ...) onto the configured
//   endpoint's collection URL. Neutron builds its links from the Host it was
//   asked by or from its own configured public URL, which behind a proxy or a
//   TLS terminator often names a different scheme or host; rebasing keeps
//   every request (and the token) on the endpoint the operator configured.
// - Keystone: POST /v3/auth/tokens?nocatalog (the catalog is not needed: the
//   Neutron endpoint is given). The token is cached and shared by concurrent
//   requests (one authentication in flight at a time); it is renewed when it
//   expires within 60 s, and once after a 401 from Neutron, after which the
//   request is retried once. No other retries: the watch loop decides.
// - Redirects are not followed (an error): fetch would carry X-Auth-Token
//   to wherever the redirect points.
// - snapshot() lists ports, then security groups, then address groups, one
//   after the other. Neutron refuses to delete a group that a port uses
//   (SecurityGroupInUse) or an address group that a rule uses
//   (AddressGroupInUse), so in this order every group a listed port names is
//   in the later group listing, and every address group a listed rule names
//   is in the address-group listing: no transient "missing profile" (which
//   Palisade treats as deny-all) from the snapshot not being atomic.
// - The change feeds of `watch` (watch.ts, DESIGN §11.7) use the same
//   listing with a query: `fields=id&fields=revision_number` (revisions),
//   `changed_since=` (needs filter_validation = false), `id=…` (what
//   changed, or what the ML2 driver's notices name: BY_ID_CHUNK ids per
//   request, an id missing from the answer is deleted); and
//   GET /ports/{id}/bindings.
//   Neutron's clock is read from its Date header: a changed_since cursor
//   must not depend on ours.
import {
  parseAddressGroupsFile, parseBindings, parsePortsFile, parseRevisions, parseSecurityGroupsFile,
  type NeutronAddressGroup, type NeutronBinding, type NeutronPort, type NeutronRevision, type NeutronSecurityGroup,
} from "./neutron-types.js";
import { parseLogsBody, type NeutronLog } from "./network-logs.js";

export type NeutronAuth =
  | { kind: "token"; token: string }
  | {
    kind: "password";
    /** Keystone, with or without the trailing /v3. */
    authUrl: string;
    username: string;
    password: string;
    projectName: string;
    /** Default "Default". */
    userDomainName?: string;
    /** Default "Default". */
    projectDomainName?: string;
  };

export interface NeutronClientOptions {
  /** Neutron endpoint, e.g. http://controller:9696 (a trailing /v2.0 is accepted). */
  url: string;
  auth: NeutronAuth;
  /** Per request (headers and body), Keystone included. Default 30 000. */
  timeoutMs?: number;
  /** For tests. Default: the global fetch. */
  fetch?: typeof fetch;
  /** `limit` of each list request. Default 500. */
  pageSize?: number;
  /** Aborts whatever request is in flight (shutdown). */
  signal?: AbortSignal;
}

export interface NeutronSnapshot {
  securityGroups: NeutronSecurityGroup[];
  ports: NeutronPort[];
  /** Undefined when Neutron lacks the address-group extension (404). */
  addressGroups?: NeutronAddressGroup[];
}

export type ChangeCollection = "ports" | "security_groups";
export type ReadKind = "list" | "by_id" | "bindings";

export interface NeutronClient {
  snapshot(): Promise<NeutronSnapshot>;
  listSecurityGroups(): Promise<NeutronSecurityGroup[]>;
  listPorts(): Promise<NeutronPort[]>;
  /** Undefined when Neutron answers 404 (no address-group extension). */
  listAddressGroups(): Promise<NeutronAddressGroup[] | undefined>;
  /** Every object's id and revision_number only (fields=id&fields=revision_number): the revisions feed. */
  listRevisions(key: ChangeCollection): Promise<NeutronRevision[]>;
  /** Whole objects changed at or after `since` (YYYY-MM-DDTHH:MM:SSZ): needs filter_validation = false. */
  listChangedSince(key: "ports", since: string): Promise<NeutronPort[]>;
  listChangedSince(key: "security_groups", since: string): Promise<NeutronSecurityGroup[]>;
  /** The objects with these ids (those that still exist), in requests of at most BY_ID_CHUNK ids. */
  getByIds(key: "ports", ids: string[]): Promise<NeutronPort[]>;
  getByIds(key: "security_groups", ids: string[]): Promise<NeutronSecurityGroup[]>;
  getByIds(key: "address_groups", ids: string[]): Promise<NeutronAddressGroup[]>;
  /** Neutron's logging API (GET /v2.0/log/logs, DESIGN §11.13); undefined when Neutron has no `log` service plugin (404). */
  listLogs(): Promise<NeutronLog[] | undefined>;
  /** A port's bindings (GET /v2.0/ports/{id}/bindings); undefined when the port is gone (404). */
  listBindings(portId: string): Promise<NeutronBinding[] | undefined>;
  /**
   * Whether Neutron accepts `changed_since` as a list filter: true, or false
   * when it refuses it (HTTP 400, `filter_validation` on, Neutron's default).
   */
  supportsChangedSince(): Promise<boolean>;
  /** Neutron's clock (its last Date header, ms since the epoch); undefined before the first answer. */
  serverTime(): number | undefined;
  /**
   * Requests made and response bytes read so far (the bench's cost measure),
   * and Neutron's reads by kind: `list` (a page of a collection listing:
   * everything, revisions, changed_since), `by_id` (a request for named
   * objects, `?id=…`), `bindings` (one port's bindings).
   */
  stats(): { requests: number; bytes: number; reads: Record<ReadKind, number> };
}

/** Any failure talking to Neutron or Keystone. One line; never holds the password or a token. */
export class NeutronApiError extends Error {
  readonly status?: number;
  readonly url: string;
  constructor(message: string, url: string, status?: number) {
    super(message);
    this.name = "NeutronApiError";
    this.url = url;
    if (status !== undefined) this.status = status;
  }
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_PAGE_SIZE = 500;
/** A cached Keystone token is renewed when it expires within this. */
export const TOKEN_RENEW_MS = 60_000;
/** Pagination guard: more pages than this is an error. */
export const MAX_PAGES = 10_000;
/** Ids per `?id=…&id=…` request: ~1.6 KB of query, well under any proxy's URL limit. */
export const BY_ID_CHUNK = 40;
const BODY_SNIPPET = 200;

// ---------------------------------------------------------------------------
// Helpers

// C0, DEL, C1, line/paragraph separators and bidi controls.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/g;

function oneLine(s: string): string {
  return s.replace(CONTROL, " ").replace(/\s+/g, " ").trim();
}

/** The URL as shown in messages: no user info. */
function showUrl(u: URL | string): string {
  try {
    const x = new URL(String(u));
    x.username = "";
    x.password = "";
    return x.toString();
  } catch {
    return oneLine(String(u));
  }
}

/** Parses an http(s) base URL: trailing slashes and an optional last segment (`/v2.0`, `/v3`) removed. */
function baseUrl(raw: string, what: string, strip: string): string {
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    throw new NeutronApiError(`${what} URL is not a valid URL: "${oneLine(raw).slice(0, 100)}"`, oneLine(raw).slice(0, 100));
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new NeutronApiError(`${what} URL must be http or https, not ${u.protocol}`, showUrl(u));
  }
  if (u.search || u.hash) throw new NeutronApiError(`${what} URL must not have a query or a fragment`, showUrl(u));
  let path = u.pathname.replace(/\/+$/, "");
  if (path.toLowerCase().endsWith(strip)) path = path.slice(0, -strip.length).replace(/\/+$/, "");
  u.pathname = path;
  return u.toString().replace(/\/+$/, "");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// Visible ASCII (what a header value may hold without surprises).
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

function positiveInt(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${what} must be a positive integer, not ${v}`);
  return v;
}

interface CachedToken {
  token: string;
  /** ms since the epoch; Infinity for a static token. */
  expiresAt: number;
}

type Collection = "security_groups" | "ports" | "address_groups" | "bindings" | "logs";
const PATHS: Record<Collection, string> = {
  logs: "log/logs",
  security_groups: "security-groups",
  ports: "ports",
  address_groups: "address-groups",
  bindings: "(per port)",
};

// ---------------------------------------------------------------------------

export function createNeutronClient(o: NeutronClientOptions): NeutronClient {
  const base = `${baseUrl(o.url, "Neutron", "/v2.0")}/v2.0`;
  const timeoutMs = positiveInt(o.timeoutMs, DEFAULT_TIMEOUT_MS, "timeoutMs");
  const pageSize = positiveInt(o.pageSize, DEFAULT_PAGE_SIZE, "pageSize");
  const doFetch = o.fetch ?? globalThis.fetch;
  const auth = o.auth;

  /** Everything that must never reach a message. */
  const secrets = new Set<string>();
  const keystoneUrl = auth.kind === "password"
    ? `${baseUrl(auth.authUrl, "Keystone", "/v3")}/v3/auth/tokens?nocatalog`
    : "";
  if (auth.kind === "password") {
    if (auth.password) secrets.add(auth.password);
  } else {
    if (auth.token) secrets.add(auth.token);
    if (!TOKEN_CHARS.test(auth.token)) {
      throw new NeutronApiError("the token is empty or holds characters not allowed in an HTTP header (whitespace, control or non-ASCII characters)", base);
    }
  }

  const redact = (s: string): string => {
    let out = s;
    // Longest first, so a secret containing another is removed whole.
    for (const x of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(x).join("[redacted]");
    return out;
  };
  const fail = (message: string, url: string, status?: number): NeutronApiError =>
    new NeutronApiError(redact(oneLine(message)), showUrl(url), status);

  const snippet = (body: string): string => {
    const s = oneLine(redact(body));
    if (!s) return "(empty body)";
    return s.length > BODY_SNIPPET ? `${s.slice(0, BODY_SNIPPET)}…` : s;
  };

  const counters = { requests: 0, bytes: 0 };
  const reads: Record<ReadKind, number> = { list: 0, by_id: 0, bindings: 0 };
  let lastServerDate: number | undefined;

  /** One HTTP exchange with the timeout on headers and body; network failures become NeutronApiError. */
  async function exchange(
    what: string, method: string, url: string, headers: Record<string, string>, body?: string,
  ): Promise<{ status: number; headers: Headers; text: string }> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
    try {
      const res = await doFetch(url, { method, headers, body, signal, redirect: "error" });
      const text = await res.text();
      counters.requests++;
      counters.bytes += text.length;
      if (what === "Neutron") {
        const date = Date.parse(res.headers.get("date") ?? "");
        if (!Number.isNaN(date)) lastServerDate = date;
      }
      return { status: res.status, headers: res.headers, text };
    } catch (e) {
      if (timeout.aborted) throw fail(`${what} ${method} ${showUrl(url)}: no complete answer within ${timeoutMs} ms`, url);
      if (o.signal?.aborted) throw fail(`${what} ${method} ${showUrl(url)}: aborted`, url);
      throw fail(`${what} ${method} ${showUrl(url)}: request failed: ${errorText(e)}`, url);
    }
  }

  // --- Authentication ------------------------------------------------------

  let cached: CachedToken | undefined = auth.kind === "token" ? { token: auth.token, expiresAt: Infinity } : undefined;
  let inflight: Promise<CachedToken> | undefined;

  async function authenticate(): Promise<CachedToken> {
    if (auth.kind !== "password") throw new Error("unreachable: static token");
    const payload = JSON.stringify({
      auth: {
        identity: {
          methods: ["password"],
          password: {
            user: { name: auth.username, domain: { name: auth.userDomainName || "Default" }, password: auth.password },
          },
        },
        scope: { project: { name: auth.projectName, domain: { name: auth.projectDomainName || "Default" } } },
      },
    });
    const res = await exchange("Keystone", "POST", keystoneUrl, {
      "Content-Type": "application/json", Accept: "application/json", "User-Agent": "palisade-openstack",
    }, payload);
    const where = `Keystone POST ${showUrl(keystoneUrl)}`;
    if (res.status < 200 || res.status > 299) {
      throw fail(`${where}: authentication failed: HTTP ${res.status}: ${snippet(res.text)}`, keystoneUrl, res.status);
    }
    const token = res.headers.get("x-subject-token") ?? "";
    if (token) secrets.add(token);
    if (!TOKEN_CHARS.test(token)) {
      throw fail(`${where}: HTTP ${res.status} without a usable X-Subject-Token header`, keystoneUrl, res.status);
    }
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch {
      throw fail(`${where}: HTTP ${res.status} with a body that is not JSON: ${snippet(res.text)}`, keystoneUrl, res.status);
    }
    const expires = isObject(json) && isObject(json.token) ? json.token.expires_at : undefined;
    const expiresAt = typeof expires === "string" ? Date.parse(expires) : NaN;
    if (Number.isNaN(expiresAt)) {
      throw fail(`${where}: HTTP ${res.status} without a valid token.expires_at in the body`, keystoneUrl, res.status);
    }
    return { token, expiresAt };
  }

  /** The token to use: cached unless it expires within TOKEN_RENEW_MS; one authentication at a time. */
  async function currentToken(): Promise<CachedToken> {
    if (cached && cached.expiresAt - Date.now() > TOKEN_RENEW_MS) return cached;
    return renew(cached);
  }

  /** Renews `stale` unless someone already replaced it. */
  function renew(stale: CachedToken | undefined): Promise<CachedToken> {
    if (cached !== stale && cached !== undefined) return Promise.resolve(cached);
    if (!inflight) {
      inflight = authenticate().then(
        (t) => { cached = t; inflight = undefined; return t; },
        (e: unknown) => { inflight = undefined; throw e; },
      );
    }
    return inflight;
  }

  // --- Neutron -------------------------------------------------------------

  /** GET with the token; 404 gives undefined when allowed. Re-authenticates once on a 401 (password auth). */
  async function getJson(url: string, allow404: boolean): Promise<unknown> {
    let tok = await currentToken();
    let res = await exchange("Neutron", "GET", url, headersFor(tok));
    if (res.status === 401) {
      if (auth.kind === "token") {
        throw fail(`Neutron GET ${showUrl(url)}: HTTP 401: token rejected: ${snippet(res.text)}`, url, 401);
      }
      tok = await renew(tok);
      res = await exchange("Neutron", "GET", url, headersFor(tok));
      if (res.status === 401) {
        throw fail(`Neutron GET ${showUrl(url)}: HTTP 401: token rejected after re-authentication: ${snippet(res.text)}`, url, 401);
      }
    }
    if (res.status === 404 && allow404) return undefined;
    if (res.status < 200 || res.status > 299) {
      throw fail(`Neutron GET ${showUrl(url)}: HTTP ${res.status}: ${snippet(res.text)}`, url, res.status);
    }
    try {
      return JSON.parse(res.text) as unknown;
    } catch {
      throw fail(`Neutron GET ${showUrl(url)}: HTTP ${res.status} with a body that is not JSON: ${snippet(res.text)}`, url, res.status);
    }
  }

  function headersFor(t: CachedToken): Record<string, string> {
    return { "X-Auth-Token": t.token, Accept: "application/json", "User-Agent": "palisade-openstack" };
  }

  /** All pages of one collection, concatenated; undefined when the first page is a 404 and that is allowed. */
  async function listAll(key: Collection, allow404: boolean, query = "", kind: ReadKind = "list", path = PATHS[key]): Promise<unknown[] | undefined> {
    const collectionUrl = `${base}/${path}`;
    let url = `${collectionUrl}?limit=${pageSize}${query}`;
    const seen = new Set<string>([url]);
    const items: unknown[] = [];
    for (let page = 1; ; page++) {
      reads[kind]++;
      const json = await getJson(url, allow404 && page === 1);
      if (json === undefined) return undefined;
      const list = isObject(json) ? json[key] : undefined;
      if (!isObject(json) || !Array.isArray(list)) {
        // Not {"<key>": [...]}: the shape check says what it is instead.
        validate(key, json);
        throw fail(`Neutron GET ${showUrl(url)}: the body is not {"${key}": [...]}`, url);
      }
      items.push(...list);
      const next = nextLink(json, key, url);
      if (next === undefined) return items;
      const target = new URL(collectionUrl);
      target.search = next.search;
      const nextUrl = target.toString();
      if (seen.has(nextUrl)) {
        throw fail(`Neutron GET ${showUrl(url)}: pagination loop: the next link repeats ${showUrl(nextUrl)} (page ${page + 1})`, nextUrl);
      }
      if (page >= MAX_PAGES) {
        throw fail(`Neutron GET ${showUrl(collectionUrl)}: more than ${MAX_PAGES} pages of ${pageSize}; giving up`, nextUrl);
      }
      seen.add(nextUrl);
      url = nextUrl;
    }
  }

  /** The `rel: next` link of a page, resolved against the page's URL; undefined when there is none. */
  function nextLink(json: Record<string, unknown>, key: Collection, url: string): URL | undefined {
    const links = json[`${key}_links`];
    if (links === undefined || links === null) return undefined;
    if (!Array.isArray(links)) throw fail(`Neutron GET ${showUrl(url)}: ${key}_links is not a list`, url);
    for (const l of links) {
      if (!isObject(l) || l.rel !== "next") continue;
      if (typeof l.href !== "string" || l.href === "") {
        throw fail(`Neutron GET ${showUrl(url)}: ${key}_links has a next link without an href`, url);
      }
      try {
        return new URL(l.href, url);
      } catch {
        throw fail(`Neutron GET ${showUrl(url)}: ${key}_links has a next link that is not a URL: ${snippet(l.href)}`, url);
      }
    }
    return undefined;
  }

  function validate(key: "security_groups", json: unknown): NeutronSecurityGroup[];
  function validate(key: "ports", json: unknown): NeutronPort[];
  function validate(key: "address_groups", json: unknown): NeutronAddressGroup[];
  function validate(key: Collection, json: unknown): unknown[];
  function validate(key: Collection, json: unknown): unknown[] {
    switch (key) {
      case "security_groups": return parseSecurityGroupsFile(json);
      case "ports": return parsePortsFile(json);
      case "address_groups": return parseAddressGroupsFile(json);
      case "bindings": return parseBindings(json, "");
      case "logs": return parseLogsBody(json);
    }
  }

  const listSecurityGroups = async (): Promise<NeutronSecurityGroup[]> =>
    validate("security_groups", { security_groups: await listAll("security_groups", false) });
  const listPorts = async (): Promise<NeutronPort[]> =>
    validate("ports", { ports: await listAll("ports", false) });
  const listAddressGroups = async (): Promise<NeutronAddressGroup[] | undefined> => {
    const items = await listAll("address_groups", true);
    return items === undefined ? undefined : validate("address_groups", { address_groups: items });
  };

  const FINGERPRINT = "&fields=id&fields=revision_number";
  const parseList = (key: ChangeCollection | "address_groups", items: unknown[] | undefined): unknown[] =>
    key === "ports" ? validate("ports", { ports: items })
      : key === "security_groups" ? validate("security_groups", { security_groups: items })
        : validate("address_groups", { address_groups: items });

  async function getByIds(key: ChangeCollection | "address_groups", ids: string[]): Promise<unknown[]> {
    const out: unknown[] = [];
    for (let i = 0; i < ids.length; i += BY_ID_CHUNK) {
      const q = ids.slice(i, i + BY_ID_CHUNK).map((id) => `&id=${encodeURIComponent(id)}`).join("");
      out.push(...parseList(key, await listAll(key, false, q, "by_id")));
    }
    return out;
  }

  return {
    async listLogs() {
      const items = await listAll("logs", true);
      return items === undefined ? undefined : parseLogsBody({ logs: items });
    },
    listSecurityGroups,
    listPorts,
    listAddressGroups,
    listRevisions: async (key) => parseRevisions({ [key]: await listAll(key, false, FINGERPRINT) }, key),
    listChangedSince: (async (key: ChangeCollection, since: string) =>
      parseList(key, await listAll(key, false, `&changed_since=${encodeURIComponent(since)}`))) as NeutronClient["listChangedSince"],
    getByIds: getByIds as NeutronClient["getByIds"],
    async listBindings(portId: string): Promise<NeutronBinding[] | undefined> {
      // Paginated when Neutron's pagination_max_limit is set — but Neutron
      // (Zed) ignores the marker of this sub-collection: page two repeats
      // page one with the same next link, for ever. A port has a binding
      // per host and only a few hosts (active, a migration's other end), so
      // pages are followed until one brings no new host (or repeats).
      const collectionUrl = `${base}/ports/${encodeURIComponent(portId)}/bindings`;
      let url = `${collectionUrl}?limit=${pageSize}`;
      const seen = new Set<string>([url]);
      const byHost = new Map<string, unknown>();
      for (let page = 1; page <= 20; page++) {
        reads.bindings++;
        const json = await getJson(url, page === 1);
        if (json === undefined) return undefined;
        if (!isObject(json) || !Array.isArray(json.bindings)) return parseBindings(json, portId); // says what is wrong with it
        const list: unknown[] = json.bindings;
        const before = byHost.size;
        for (const b of parseBindings({ bindings: list }, portId)) byHost.set(b.host, b);
        const next = nextLink(json, "bindings", url);
        if (next === undefined || byHost.size === before) break;
        const target = new URL(collectionUrl);
        target.search = next.search;
        url = target.toString();
        if (seen.has(url)) break;
        seen.add(url);
      }
      return [...byHost.values()] as NeutronBinding[];
    },
    async supportsChangedSince(): Promise<boolean> {
      // A time in the future of any port: the answer is empty when accepted.
      const url = `${base}/ports?limit=1&fields=id&changed_since=${encodeURIComponent(neutronTime(Date.now() + 86_400_000))}`;
      try {
        reads.list++;
        await getJson(url, false);
        return true;
      } catch (e) {
        if (e instanceof NeutronApiError && e.status === 400 && /changed_since/.test(e.message)) return false;
        throw e;
      }
    },
    serverTime: () => lastServerDate,
    stats: () => ({ ...counters, reads: { ...reads } }),
    async snapshot(): Promise<NeutronSnapshot> {
      // Order matters; see the header comment.
      const ports = await listPorts();
      const securityGroups = await listSecurityGroups();
      const addressGroups = await listAddressGroups();
      return addressGroups === undefined ? { securityGroups, ports } : { securityGroups, ports, addressGroups };
    },
  };
}

/** A time as Neutron's changed_since wants it: YYYY-MM-DDTHH:MM:SSZ (whole seconds, rounded down). */
export function neutronTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** fetch's error, with its cause (where undici puts ECONNREFUSED and the like). */
function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  const causeText = cause instanceof Error
    ? `${(cause as { code?: unknown }).code ? `${String((cause as { code?: unknown }).code)} ` : ""}${cause.message}`
    : cause !== undefined ? String(cause) : "";
  return causeText && !e.message.includes(causeText) ? `${e.message}: ${causeText}` : e.message;
}

// ---------------------------------------------------------------------------
// Credentials from flags and the standard OS_* variables

export interface NeutronAuthFlags {
  token?: string;
  authUrl?: string;
  username?: string;
  password?: string;
  projectName?: string;
  userDomainName?: string;
  projectDomainName?: string;
}

/**
 * The credentials, each field from its flag, else its OS_* variable (empty
 * counts as unset). A token (flag, else OS_TOKEN) means token auth, unless
 * password flags were given and no token flag: a flag beats the environment.
 * Otherwise Keystone password auth, needing OS_AUTH_URL, OS_USERNAME,
 * OS_PASSWORD, OS_PROJECT_NAME (domains default to "Default"). Throws an
 * Error naming every missing variable.
 */
export function authFromEnv(env: NodeJS.ProcessEnv, flags: NeutronAuthFlags = {}): NeutronAuth {
  const val = (s: string | undefined): string | undefined => {
    const t = s?.trim();
    return t ? t : undefined;
  };
  const pick = (flag: string | undefined, name: string): string | undefined => val(flag) ?? val(env[name]);

  const flagToken = val(flags.token);
  const passwordFlags = [flags.authUrl, flags.username, flags.password, flags.projectName].some((x) => val(x) !== undefined);
  const token = flagToken ?? (passwordFlags ? undefined : val(env.OS_TOKEN));
  if (token !== undefined) return { kind: "token", token };

  const fields = {
    authUrl: pick(flags.authUrl, "OS_AUTH_URL"),
    username: pick(flags.username, "OS_USERNAME"),
    // A password may legitimately start or end with spaces: only an empty one counts as unset.
    password: flags.password ? flags.password : env.OS_PASSWORD ? env.OS_PASSWORD : undefined,
    projectName: pick(flags.projectName, "OS_PROJECT_NAME"),
  };
  const names: Record<keyof typeof fields, string> = {
    authUrl: "OS_AUTH_URL", username: "OS_USERNAME", password: "OS_PASSWORD", projectName: "OS_PROJECT_NAME",
  };
  const missing = (Object.keys(fields) as (keyof typeof fields)[]).filter((k) => fields[k] === undefined).map((k) => names[k]);
  if (missing.length) {
    throw new Error(
      `OpenStack credentials incomplete: missing ${missing.join(", ")}; give a token (OS_TOKEN) or Keystone password credentials (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME), as variables or the matching flags`,
    );
  }
  return {
    kind: "password",
    authUrl: fields.authUrl!,
    username: fields.username!,
    password: fields.password!,
    projectName: fields.projectName!,
    userDomainName: pick(flags.userDomainName, "OS_USER_DOMAIN_NAME") ?? "Default",
    projectDomainName: pick(flags.projectDomainName, "OS_PROJECT_DOMAIN_NAME") ?? "Default",
  };
}
