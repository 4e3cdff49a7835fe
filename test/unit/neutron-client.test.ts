// The Neutron API client (services/openstack/neutron-client.ts) against a real
// local HTTP server that fakes Keystone (/identity/v3/auth/tokens) and
// Neutron (/network/v2.0/...), serving the Neutron-shaped fixtures with
// Neutron's marker pagination. A few edge cases (URL forms, the page-count
// guard) use a stub fetch instead, where a server would add nothing.
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  MAX_PAGES, NeutronApiError, authFromEnv, createNeutronClient,
  type NeutronAuth, type NeutronClientOptions,
} from "../../services/openstack/neutron-client.js";
import {
  TranslateError, parseAddressGroupsFile, parsePortsFile, parseSecurityGroupsFile,
} from "../../services/openstack/neutron-types.js";

const fixture = (name: string): Record<string, unknown[]> =>
  JSON.parse(readFileSync(new URL(`../fixtures/openstack/${name}`, import.meta.url), "utf8")) as Record<string, unknown[]>;

const PASSWORD = "s3cret-Pa55word!";
const STATIC_TOKEN = "gAAAAABstatic-token-0123456789";

type Collection = "security_groups" | "ports" | "address_groups";
const COLLECTION_PATHS: Record<string, Collection> = {
  "/network/v2.0/security-groups": "security_groups",
  "/network/v2.0/ports": "ports",
  "/network/v2.0/address-groups": "address_groups",
};

interface Logged {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
}

/** The fake cloud's state; reset before each test. */
interface Cloud {
  /** Lifetime of the tokens Keystone issues. */
  ttlMs: number;
  /** Tokens Neutron accepts. */
  valid: Set<string>;
  issued: string[];
  data: Record<Collection, unknown[]>;
  /** false: /address-groups is a 404 (no extension). */
  addressGroupsExtension: boolean;
  /** Host the next links name (Neutron behind a proxy names its internal one). */
  linkOrigin: string;
  /** Handles the request itself when it returns true. */
  override?: (req: Logged, res: ServerResponse) => boolean;
}

let server: Server;
let origin = "";
let cloud: Cloud;
const log: Logged[] = [];
const hanging = new Set<ServerResponse>();

function freshCloud(): Cloud {
  return {
    ttlMs: 3_600_000,
    valid: new Set([STATIC_TOKEN]),
    issued: [],
    data: {
      security_groups: fixture("security-groups.json").security_groups!,
      ports: fixture("ports.json").ports!,
      address_groups: fixture("address-groups.json").address_groups!,
    },
    addressGroupsExtension: true,
    linkOrigin: "http://neutron.internal:9696",
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(text);
}

function serve(req: Logged, res: ServerResponse): void {
  if (cloud.override?.(req, res)) return;
  if (req.method === "POST" && req.path === "/identity/v3/auth/tokens") {
    const token = `tok-${cloud.issued.length + 1}-${Math.random().toString(36).slice(2)}`;
    cloud.issued.push(token);
    cloud.valid.add(token);
    const expiresAt = new Date(Date.now() + cloud.ttlMs).toISOString().replace(/\.\d+Z$/, ".000000Z");
    send(res, 201, { token: { methods: ["password"], expires_at: expiresAt, issued_at: new Date().toISOString() } }, { "X-Subject-Token": token });
    return;
  }
  const key = COLLECTION_PATHS[req.path];
  if (req.method !== "GET" || key === undefined) {
    send(res, 404, { NeutronError: { type: "HTTPNotFound", message: "The resource could not be found.", detail: "" } });
    return;
  }
  const token = req.headers["x-auth-token"];
  if (typeof token !== "string" || !cloud.valid.has(token)) {
    send(res, 401, "Authentication required", { "Content-Type": "text/plain" });
    return;
  }
  if (key === "address_groups" && !cloud.addressGroupsExtension) {
    send(res, 404, { NeutronError: { type: "HTTPNotFound", message: "The resource could not be found.", detail: "" } });
    return;
  }
  // Neutron's marker pagination: items after the marker, at most `limit`; a next
  // link when the page is full (so a last full page is followed by an empty one).
  const all = cloud.data[key] as { id: string }[];
  const limit = Number(req.query.get("limit") ?? all.length);
  const marker = req.query.get("marker");
  const start = marker === null ? 0 : all.findIndex((x) => x.id === marker) + 1;
  const page = all.slice(start, start + limit);
  const links: { rel: string; href: string }[] = [];
  const path = req.path.replace(/^\/network/, "");
  if (marker !== null) links.push({ rel: "previous", href: `${cloud.linkOrigin}${path}?limit=${limit}&marker=${page[0]?.id ?? marker}&page_reverse=True` });
  if (page.length === limit && limit > 0) links.push({ rel: "next", href: `${cloud.linkOrigin}${path}?limit=${limit}&marker=${page[page.length - 1]!.id}` });
  send(res, 200, links.length ? { [key]: page, [`${key}_links`]: links } : { [key]: page });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const u = new URL(req.url ?? "/", "http://x");
      const entry: Logged = {
        method: req.method ?? "", path: u.pathname, query: u.searchParams, headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      log.push(entry);
      serve(entry, res);
    });
  });
  // Idle keep-alive connections stay open for the whole file: Node closes
  // them after 5 s by default, and a client reusing one at that very moment
  // (a loaded machine) sees ECONNRESET — a flake, not behaviour under test.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  cloud = freshCloud();
  log.length = 0;
});

afterEach(() => {
  for (const r of hanging) r.destroy();
  hanging.clear();
  vi.useRealTimers();
});

const passwordAuth = (over: Partial<Extract<NeutronAuth, { kind: "password" }>> = {}): NeutronAuth => ({
  kind: "password", authUrl: `${origin}/identity/v3`, username: "palisade", password: PASSWORD, projectName: "admin",
  userDomainName: "Users", projectDomainName: "Projects", ...over,
});

const client = (over: Partial<NeutronClientOptions> = {}) =>
  createNeutronClient({ url: `${origin}/network`, auth: passwordAuth(), timeoutMs: 5_000, ...over });

const authRequests = () => log.filter((l) => l.path === "/identity/v3/auth/tokens");
const neutronRequests = () => log.filter((l) => l.path.startsWith("/network/"));

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

async function apiError(p: Promise<unknown>): Promise<NeutronApiError> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(NeutronApiError);
  return e as NeutronApiError;
}

/** No secret, one line. */
function expectClean(e: Error, ...secrets: string[]): void {
  expect(e.message).not.toMatch(/[\r\n\u0000-\u001f]/);
  for (const s of [PASSWORD, STATIC_TOKEN, ...cloud.issued, ...secrets]) expect(e.message).not.toContain(s);
}

// ---------------------------------------------------------------------------

describe("Keystone password authentication", () => {
  it("posts the standard v3 password body and uses X-Subject-Token on every Neutron request", async () => {
    const sgs = await client().listSecurityGroups();
    expect(sgs).toEqual(parseSecurityGroupsFile(fixture("security-groups.json")));

    const auths = authRequests();
    expect(auths).toHaveLength(1);
    expect(auths[0]!.method).toBe("POST");
    expect(auths[0]!.query.has("nocatalog")).toBe(true);
    expect(auths[0]!.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(auths[0]!.body)).toEqual({
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: "palisade", domain: { name: "Users" }, password: PASSWORD } },
        },
        scope: { project: { name: "admin", domain: { name: "Projects" } } },
      },
    });
    const n = neutronRequests();
    expect(n.length).toBeGreaterThan(0);
    for (const r of n) {
      expect(r.headers["x-auth-token"]).toBe(cloud.issued[0]);
      expect(r.headers.accept).toBe("application/json");
    }
  });

  it("takes the auth URL with or without /v3 and defaults both domains to Default", async () => {
    for (const authUrl of [`${origin}/identity`, `${origin}/identity/`, `${origin}/identity/v3/`]) {
      log.length = 0;
      await client({ auth: passwordAuth({ authUrl, userDomainName: undefined, projectDomainName: undefined }) }).listAddressGroups();
      expect(authRequests()).toHaveLength(1);
      const body = JSON.parse(authRequests()[0]!.body) as { auth: { identity: { password: { user: { domain: unknown } } }; scope: { project: { domain: unknown } } } };
      expect(body.auth.identity.password.user.domain).toEqual({ name: "Default" });
      expect(body.auth.scope.project.domain).toEqual({ name: "Default" });
    }
  });

  it("caches the token: one authentication for a snapshot and further lists", async () => {
    const c = client();
    await c.snapshot();
    await c.listPorts();
    await c.listSecurityGroups();
    expect(authRequests()).toHaveLength(1);
    expect(neutronRequests()).toHaveLength(5);
    expect(new Set(neutronRequests().map((r) => r.headers["x-auth-token"]))).toEqual(new Set([cloud.issued[0]]));
  });

  it("shares one authentication between concurrent requests", async () => {
    const c = client();
    await Promise.all([c.listPorts(), c.listSecurityGroups(), c.listAddressGroups()]);
    expect(authRequests()).toHaveLength(1);
  });

  it("re-authenticates once on a 401 from Neutron and retries the request", async () => {
    const c = client();
    await c.listPorts();
    cloud.valid.delete(cloud.issued[0]!); // Keystone revoked it
    const ports = await c.listPorts();
    expect(ports).toEqual(parsePortsFile(fixture("ports.json")));
    expect(authRequests()).toHaveLength(2);
    const tokens = neutronRequests().map((r) => r.headers["x-auth-token"]);
    expect(tokens).toEqual([cloud.issued[0], cloud.issued[0], cloud.issued[1]]);
    // The new token is cached in turn.
    await c.listPorts();
    expect(authRequests()).toHaveLength(2);
  });

  it("gives up with 'token rejected' when the retry after re-authentication is a 401 too", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/network/")) return false;
      send(res, 401, `{"error": "bad token ${String(req.headers["x-auth-token"])}"}`);
      return true;
    };
    const e = await apiError(client().listPorts());
    expect(e.status).toBe(401);
    expect(e.message).toMatch(/token rejected after re-authentication/);
    expect(authRequests()).toHaveLength(2);
    expect(neutronRequests()).toHaveLength(2);
    expectClean(e);
    expect(e.message).toContain("[redacted]");
  });

  it("re-authenticates when the token expires within 60 s", async () => {
    cloud.ttlMs = 30_000; // already inside the margin: every request renews
    const c = client();
    await c.listAddressGroups();
    await c.listAddressGroups();
    expect(authRequests()).toHaveLength(2);
    expect(neutronRequests().map((r) => r.headers["x-auth-token"])).toEqual(cloud.issued);
  });

  it("keeps the token until 60 s before its expiry, then renews it", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2025-06-01T12:00:00Z"));
    cloud.ttlMs = 10 * 60_000;
    const c = client();
    await c.listAddressGroups();
    vi.setSystemTime(new Date("2025-06-01T12:08:59Z")); // 61 s left
    await c.listAddressGroups();
    expect(authRequests()).toHaveLength(1);
    vi.setSystemTime(new Date("2025-06-01T12:09:01Z")); // 59 s left
    await c.listAddressGroups();
    expect(authRequests()).toHaveLength(2);
    expect(neutronRequests().map((r) => r.headers["x-auth-token"])).toEqual([cloud.issued[0], cloud.issued[0], cloud.issued[1]]);
  });

  it("reports a failed authentication with the Keystone URL and status, without the password", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/identity/")) return false;
      send(res, 401, { error: { code: 401, message: `The request you have made requires authentication. (echo: ${req.body})`, title: "Unauthorized" } });
      return true;
    };
    const e = await apiError(client().listPorts());
    expect(e.status).toBe(401);
    expect(e.url).toBe(`${origin}/identity/v3/auth/tokens?nocatalog`);
    expect(e.message).toContain(`Keystone POST ${origin}/identity/v3/auth/tokens`);
    expect(e.message).toContain("HTTP 401");
    expect(e.message).toContain("requires authentication");
    expectClean(e);
    expect(neutronRequests()).toHaveLength(0);
  });

  it("rejects a Keystone answer without X-Subject-Token or without expires_at", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/identity/")) return false;
      send(res, 201, { token: { expires_at: "2099-01-01T00:00:00Z" } });
      return true;
    };
    const e1 = await apiError(client().listPorts());
    expect(e1.message).toMatch(/without a usable X-Subject-Token/);

    cloud.override = (req, res) => {
      if (!req.path.startsWith("/identity/")) return false;
      send(res, 201, { token: {} }, { "X-Subject-Token": "tok-x" });
      return true;
    };
    const e2 = await apiError(client().listPorts());
    expect(e2.message).toMatch(/without a valid token\.expires_at/);
    expect(e2.message).not.toContain("tok-x");
  });
});

describe("static token", () => {
  it("sends the token as is, never calling Keystone", async () => {
    const snap = await client({ auth: { kind: "token", token: STATIC_TOKEN } }).snapshot();
    expect(snap.ports).toHaveLength(7);
    expect(authRequests()).toHaveLength(0);
    expect(neutronRequests().map((r) => r.headers["x-auth-token"])).toEqual([STATIC_TOKEN, STATIC_TOKEN, STATIC_TOKEN]);
  });

  it("a 401 is 'token rejected', without the token", async () => {
    const token = "expired-token-abcdef";
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/network/")) return false;
      send(res, 401, `invalid token ${String(req.headers["x-auth-token"])}`);
      return true;
    };
    const e = await apiError(client({ auth: { kind: "token", token } }).listPorts());
    expect(e.status).toBe(401);
    expect(e.message).toMatch(/token rejected/);
    expect(e.message).not.toMatch(/re-authentication/);
    expectClean(e, token);
    expect(neutronRequests()).toHaveLength(1);
    expect(authRequests()).toHaveLength(0);
  });

  it("refuses a token that cannot go in a header, without echoing it", () => {
    const token = "abc\ndef-secret";
    let err: unknown;
    try {
      createNeutronClient({ url: origin, auth: { kind: "token", token } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NeutronApiError);
    expect((err as Error).message).toMatch(/characters not allowed/);
    expect((err as Error).message).not.toContain("def-secret");
  });
});

describe("pagination", () => {
  it("follows next links over several pages, with limit and marker, rebased onto the configured endpoint", async () => {
    const ports = await client({ pageSize: 2 }).listPorts();
    expect(ports).toEqual(parsePortsFile(fixture("ports.json")));
    const ids = (cloud.data.ports as { id: string }[]).map((p) => p.id);
    const pages = neutronRequests();
    // 7 ports by 2: 2 + 2 + 2 + 1. The links name neutron.internal; every request still came here.
    expect(pages.map((r) => r.query.get("marker"))).toEqual([null, ids[1], ids[3], ids[5]]);
    expect(pages.every((r) => r.query.get("limit") === "2" && r.path === "/network/v2.0/ports")).toBe(true);
  });

  it("stops after a full last page when the next page is empty", async () => {
    const sgs = await client({ pageSize: 1 }).listSecurityGroups();
    expect(sgs.map((g) => g.id)).toEqual((cloud.data.security_groups as { id: string }[]).map((g) => g.id));
    expect(neutronRequests()).toHaveLength(3); // 1 + 1 + empty
  });

  it("uses pageSize 500 by default", async () => {
    await client().listPorts();
    expect(neutronRequests().map((r) => r.query.get("limit"))).toEqual(["500"]);
  });

  it("validates the concatenated pages: a malformed port on page 3 is a TranslateError naming it", async () => {
    const bad = structuredClone(cloud.data.ports) as Record<string, unknown>[];
    delete bad[5]!.mac_address;
    bad[5]!.admin_state_up = "yes";
    cloud.data.ports = bad;
    const e = await rejection(client({ pageSize: 2 }).listPorts());
    expect(e).toBeInstanceOf(TranslateError);
    const id = bad[5]!.id as string;
    expect((e as TranslateError).issues).toEqual([
      { object: `port ${id}`, field: "mac_address", reason: "is required (a string)" },
      { object: `port ${id}`, field: "admin_state_up", reason: 'must be true or false, not the string "yes"' },
    ]);
    expect(neutronRequests()).toHaveLength(4);
  });

  it("a page that is not {\"ports\": [...]} is a TranslateError", async () => {
    cloud.override = (req, res) => {
      if (req.path !== "/network/v2.0/ports") return false;
      send(res, 200, { port: cloud.data.ports[0] });
      return true;
    };
    const e = await rejection(client({ auth: { kind: "token", token: STATIC_TOKEN } }).listPorts());
    expect(e).toBeInstanceOf(TranslateError);
    expect((e as TranslateError).issues[0]!.field).toBe("ports");
    expect((e as TranslateError).message).toMatch(/looks like a single port/);
  });

  it("a next link that repeats is a pagination loop error", async () => {
    cloud.override = (req, res) => {
      if (req.path !== "/network/v2.0/security-groups") return false;
      const sgs = cloud.data.security_groups;
      send(res, 200, {
        security_groups: [sgs[0]],
        security_groups_links: [{ rel: "next", href: `${origin}/network/v2.0/security-groups?limit=1&marker=always-the-same` }],
      });
      return true;
    };
    const e = await apiError(client({ pageSize: 1 }).listSecurityGroups());
    expect(e.message).toMatch(/pagination loop/);
    expect(e.message).toContain("marker=always-the-same");
    expect(neutronRequests()).toHaveLength(2);
  });

  it(`more than ${MAX_PAGES} pages is an error`, async () => {
    let calls = 0;
    const fetchStub = (async (input: string | URL | Request) => {
      calls++;
      const u = new URL(String(input));
      const n = Number(u.searchParams.get("marker") ?? "0") + 1;
      return new Response(JSON.stringify({ ports: [], ports_links: [{ rel: "next", href: `http://n/v2.0/ports?limit=1&marker=${n}` }] }));
    }) as typeof fetch;
    const e = await apiError(createNeutronClient({ url: "http://n:9696", auth: { kind: "token", token: STATIC_TOKEN }, fetch: fetchStub, pageSize: 1 }).listPorts());
    expect(e.message).toMatch(/more than 10000 pages/);
    expect(calls).toBe(MAX_PAGES);
  });
});

describe("address groups and snapshot", () => {
  it("snapshot lists ports, then security groups, then address groups", async () => {
    const snap = await client().snapshot();
    expect(snap).toEqual({
      ports: parsePortsFile(fixture("ports.json")),
      securityGroups: parseSecurityGroupsFile(fixture("security-groups.json")),
      addressGroups: parseAddressGroupsFile(fixture("address-groups.json")),
    });
    expect(neutronRequests().map((r) => r.path)).toEqual([
      "/network/v2.0/ports", "/network/v2.0/security-groups", "/network/v2.0/address-groups",
    ]);
  });

  it("a 404 on address groups (no extension) gives undefined", async () => {
    cloud.addressGroupsExtension = false;
    const c = client();
    expect(await c.listAddressGroups()).toBeUndefined();
    const snap = await c.snapshot();
    expect(snap.addressGroups).toBeUndefined();
    expect("addressGroups" in snap).toBe(false);
    expect(snap.ports).toHaveLength(7);
  });

  it("a 404 on ports or security groups is an error", async () => {
    cloud.override = (req, res) => {
      if (req.path !== "/network/v2.0/ports") return false;
      send(res, 404, "not here");
      return true;
    };
    const e = await apiError(client().snapshot());
    expect(e.status).toBe(404);
    expect(e.url).toBe(`${origin}/network/v2.0/ports?limit=500`);
  });
});

describe("errors", () => {
  it("non-2xx: status, URL and the first 200 characters of the body, on one line, without secrets", async () => {
    cloud.override = (req, res) => {
      if (req.path !== "/network/v2.0/security-groups") return false;
      const body = `Internal\r\nerror\u0007\u001b[31m token=${String(req.headers["x-auth-token"])} password=${PASSWORD}\n${"x".repeat(400)}END`;
      send(res, 503, body, { "Content-Type": "text/plain" });
      return true;
    };
    const e = await apiError(client().listSecurityGroups());
    expect(e.status).toBe(503);
    expect(e.url).toBe(`${origin}/network/v2.0/security-groups?limit=500`);
    expect(e.message).toContain(`Neutron GET ${origin}/network/v2.0/security-groups?limit=500: HTTP 503: Internal error [31m token=[redacted] password=[redacted] xxx`);
    expect(e.message).not.toContain("END");
    const snippet = e.message.slice(e.message.indexOf("HTTP 503: ") + "HTTP 503: ".length);
    expect(snippet.length).toBeLessThanOrEqual(201);
    expectClean(e);
  });

  it("a body that is not JSON is a NeutronApiError", async () => {
    cloud.override = (req, res) => {
      if (req.path !== "/network/v2.0/ports") return false;
      send(res, 200, '{"ports": [');
      return true;
    };
    const e = await apiError(client().listPorts());
    expect(e.status).toBe(200);
    expect(e.message).toMatch(/not JSON: \{"ports": \[$/);
  });

  it("times out when Neutron does not answer", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/network/")) return false;
      hanging.add(res);
      return true;
    };
    const started = Date.now();
    const e = await apiError(client({ timeoutMs: 200 }).listPorts());
    expect(e.message).toMatch(/no complete answer within 200 ms/);
    expect(e.status).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("times out when the body stalls after the headers", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/network/")) return false;
      res.writeHead(200, { "Content-Type": "application/json" });
      res.write('{"ports": [');
      hanging.add(res);
      return true;
    };
    const e = await apiError(client({ timeoutMs: 200, auth: { kind: "token", token: STATIC_TOKEN } }).listPorts());
    expect(e.message).toMatch(/no complete answer within 200 ms/);
  });

  it("times out when Keystone does not answer", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/identity/")) return false;
      hanging.add(res);
      return true;
    };
    const e = await apiError(client({ timeoutMs: 200 }).listPorts());
    expect(e.message).toMatch(/^Keystone POST .*no complete answer within 200 ms/);
    expect(neutronRequests()).toHaveLength(0);
  });

  it("a refused connection is a NeutronApiError", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const e = await apiError(createNeutronClient({ url: `http://127.0.0.1:${port}`, auth: { kind: "token", token: STATIC_TOKEN } }).listPorts());
    expect(e.message).toMatch(/request failed: .*ECONNREFUSED/);
    expectClean(e);
  });

  it("does not follow a redirect (the token would go along)", async () => {
    cloud.override = (req, res) => {
      if (req.path === "/elsewhere/v2.0/ports") {
        send(res, 200, { ports: [] });
        return true;
      }
      if (!req.path.startsWith("/network/")) return false;
      res.writeHead(302, { Location: `${origin}/elsewhere/v2.0/ports` });
      res.end();
      return true;
    };
    const e = await apiError(client({ auth: { kind: "token", token: STATIC_TOKEN } }).listPorts());
    expect(e.message).toMatch(/request failed/);
    expect(log.map((l) => l.path)).toEqual(["/network/v2.0/ports"]);
    expectClean(e);
  });

  it("aborts with the caller's signal", async () => {
    cloud.override = (req, res) => {
      if (!req.path.startsWith("/network/")) return false;
      hanging.add(res);
      return true;
    };
    const ac = new AbortController();
    const p = client({ signal: ac.signal, auth: { kind: "token", token: STATIC_TOKEN } }).listPorts();
    setTimeout(() => ac.abort(), 50);
    const e = await apiError(p);
    expect(e.message).toMatch(/: aborted$/);
  });
});

describe("endpoint URL", () => {
  async function requested(url: string): Promise<string> {
    let seen = "";
    const fetchStub = (async (input: string | URL | Request) => {
      seen = String(input);
      return new Response('{"ports": []}');
    }) as typeof fetch;
    await createNeutronClient({ url, auth: { kind: "token", token: STATIC_TOKEN }, fetch: fetchStub }).listPorts();
    return seen;
  }

  it("accepts trailing slashes and a trailing /v2.0", async () => {
    for (const u of ["http://ctl:9696", "http://ctl:9696/", "http://ctl:9696/v2.0", "http://ctl:9696/v2.0/", "http://ctl:9696//"]) {
      expect(await requested(u)).toBe("http://ctl:9696/v2.0/ports?limit=500");
    }
    expect(await requested("https://cloud.example/network/v2.0/")).toBe("https://cloud.example/network/v2.0/ports?limit=500");
  });

  it("rejects a URL that is not http(s)", () => {
    expect(() => createNeutronClient({ url: "ftp://ctl", auth: { kind: "token", token: STATIC_TOKEN } })).toThrow(/must be http or https/);
    expect(() => createNeutronClient({ url: "controller:9696x", auth: { kind: "token", token: STATIC_TOKEN } })).toThrow(NeutronApiError);
    expect(() => createNeutronClient({ url: "http://ctl", auth: { kind: "token", token: STATIC_TOKEN }, pageSize: 0 })).toThrow(/pageSize/);
  });
});

describe("authFromEnv", () => {
  const ENV = {
    OS_AUTH_URL: "http://keystone:5000/v3", OS_USERNAME: "env-user", OS_PASSWORD: "env-pass", OS_PROJECT_NAME: "env-project",
  };

  it("reads the OS_* variables, domains defaulting to Default", () => {
    expect(authFromEnv(ENV, {})).toEqual({
      kind: "password", authUrl: "http://keystone:5000/v3", username: "env-user", password: "env-pass",
      projectName: "env-project", userDomainName: "Default", projectDomainName: "Default",
    });
    expect(authFromEnv({ ...ENV, OS_USER_DOMAIN_NAME: "ud", OS_PROJECT_DOMAIN_NAME: "pd" }, {})).toMatchObject({
      userDomainName: "ud", projectDomainName: "pd",
    });
  });

  it("flags win over the variables, field by field", () => {
    expect(authFromEnv({ ...ENV, OS_USER_DOMAIN_NAME: "ud" }, { username: "flag-user", projectDomainName: "flag-pd" })).toEqual({
      kind: "password", authUrl: "http://keystone:5000/v3", username: "flag-user", password: "env-pass",
      projectName: "env-project", userDomainName: "ud", projectDomainName: "flag-pd",
    });
  });

  it("a token means token auth; a token flag beats everything, password flags beat OS_TOKEN", () => {
    expect(authFromEnv({ ...ENV, OS_TOKEN: "env-token" }, {})).toEqual({ kind: "token", token: "env-token" });
    expect(authFromEnv({ ...ENV, OS_TOKEN: "env-token" }, { token: "flag-token", username: "u" })).toEqual({ kind: "token", token: "flag-token" });
    expect(authFromEnv({ ...ENV, OS_TOKEN: "env-token" }, { password: "flag-pass" })).toMatchObject({ kind: "password", password: "flag-pass", username: "env-user" });
    expect(authFromEnv({ OS_TOKEN: "  env-token\n" }, {})).toEqual({ kind: "token", token: "env-token" });
  });

  it("empty values count as unset", () => {
    expect(authFromEnv({ ...ENV, OS_TOKEN: "" }, { token: "" })).toMatchObject({ kind: "password" });
    expect(authFromEnv(ENV, { username: "" })).toMatchObject({ username: "env-user" });
  });

  it("names every missing variable, and never the password", () => {
    expect(() => authFromEnv({}, {})).toThrow("missing OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME");
    let err: unknown;
    try {
      authFromEnv({ OS_PASSWORD: "hunter2-secret", OS_USERNAME: "u" }, { authUrl: "http://k" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    // Only the project is missing (the URL came from a flag).
    expect((err as Error).message).toMatch(/: missing OS_PROJECT_NAME; give a token/);
    expect((err as Error).message).not.toContain("hunter2-secret");
  });
});
