// Hostile input against the API (raw protobuf, bypassing the CLI's checks) and
// the CLI: control characters, quotes, spaces, iptables syntax, very long
// strings, huge lists. Every request is refused with INVALID_ARGUMENT or
// accepted and rendered harmlessly — never a crash, never a token that could
// break out of its place in an iptables-restore or ipset line.
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, RpcError } from "../../services/contract/clients.js";
import { MAX_ERROR_DETAILS } from "../../services/runtime/grpc-server.js";
import { Action, EndpointState, type Match, type Rule } from "../../services/gen/palisade/policy/v1/model.js";
import type { Document } from "../../services/gen/palisade/policy/v1/policy.js";
import { palisadectl, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;

const nasty = fc.oneof(
  fc.constantFrom("", " ", "\n", "a\nb", "x\r\n-A FORWARD -j ACCEPT", "\"", "'", "$(reboot)", "`id`", "a b", "-j ACCEPT", "! -s 0/0",
    "../../status/hosts/x", "a/b", ".", "..", "\u0000", "\u202e", "tap0\n-A pal-FORWARD -j ACCEPT", "0.0.0.0/0", "::/0", "999.1.1.1/8",
    "1.2.3.4/33", "x".repeat(300), "tcp ! -p udp", "icmp\t", "--dport 22", "%00", "\\", "pal-FORWARD", "ACCEPT"),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const ports = fc.array(fc.record({ first: fc.nat(70000), last: fc.nat(70000) }), { maxLength: 4 });
const match: fc.Arbitrary<Match> = fc.record({
  protocol: opt(nasty), srcNet: opt(nasty), dstNet: opt(nasty), srcTag: opt(nasty), dstTag: opt(nasty),
  srcPorts: ports, dstPorts: ports, icmpType: opt(fc.nat(300)), icmpCode: opt(fc.nat(300)),
});
const rule: fc.Arbitrary<Rule> = fc.record({ action: fc.constantFrom(Action.ACTION_ALLOW, Action.ACTION_DENY, 7 as Action), ipVersion: fc.constantFrom(0, 4, 6, 5), match, negated: match });
const profileDoc: fc.Arbitrary<Document> = fc.record({
  id: nasty, tags: fc.array(nasty, { maxLength: 3 }), inboundRules: fc.array(rule, { maxLength: 3 }), outboundRules: fc.array(rule, { maxLength: 2 }), revision: fc.constant(0),
  labels: fc.dictionary(nasty, nasty, { maxKeys: 3 }),
}).map((value) => ({ kind: { $case: "profile" as const, value } }));
const endpointDoc: fc.Arbitrary<Document> = fc.record({
  host: nasty, orchestrator: nasty, workload: nasty, id: nasty, name: nasty, state: fc.constantFrom(EndpointState.ENDPOINT_STATE_ACTIVE, EndpointState.ENDPOINT_STATE_UNSPECIFIED, 9 as EndpointState),
  mac: nasty, ipv4Nets: fc.array(nasty, { maxLength: 3 }), ipv6Nets: fc.array(nasty, { maxLength: 2 }), profileIds: fc.array(nasty, { maxLength: 3 }),
  labels: fc.dictionary(nasty, nasty, { maxKeys: 2 }), revision: fc.constant(0),
  network: nasty, addressPairs: fc.array(fc.record({ ipAddress: nasty, macAddress: nasty }), { maxLength: 2 }),
}).map((value) => ({ kind: { $case: "endpoint" as const, value } }));

const deletion = fc.record({
  object: fc.oneof(
    nasty.map((value) => ({ kind: { $case: "profileId" as const, value } })),
    fc.record({ host: nasty, orchestrator: nasty, workload: nasty, id: nasty }).map((value) => ({ kind: { $case: "endpoint" as const, value } })),
    fc.constant({ kind: undefined }),
  ),
  expectedRevision: fc.option(fc.integer({ min: -5, max: 1_000_000 }), { nil: undefined }),
});

/** Every rendered rule and name may only contain characters that cannot leave their token. */
const SAFE_RULE = /^[A-Za-z0-9 _.:\/!,+-]+$/;

describe("hostile input", () => {
  beforeAll(async () => { requireBuild(); t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  it("the API refuses or renders harmlessly; it never fails internally", async () => {
    let accepted = 0;
    let refused = 0;
    await fc.assert(fc.asyncProperty(fc.array(fc.oneof(profileDoc, endpointDoc), { minLength: 1, maxLength: 4 }), fc.array(deletion, { maxLength: 2 }), async (documents, deletes) => {
      try {
        await call(t.clients.policy, t.clients.policy.apply, { deletes, documents }, 10_000);
        accepted++;
      } catch (e) {
        const err = e as RpcError;
        expect([grpc.status.INVALID_ARGUMENT, grpc.status.FAILED_PRECONDITION], err.message).toContain(err.code);
        // Bounded, readable details whatever the request (MAX_ERROR_DETAILS).
        expect(err.message.length).toBeLessThanOrEqual(MAX_ERROR_DETAILS);
        refused++;
      }
    }), { numRuns: 300, seed: 20261122, endOnFailure: true });
    expect(refused).toBeGreaterThan(0);
    // Whatever was accepted, every host's rendered state is made of safe tokens.
    await new Promise((r) => setTimeout(r, 300));
    const graph = t.controller.graph;
    for (const host of graph.hostNames()) {
      for (const u of graph.snapshot(host).updates) {
        if (u.type === "chain-update") {
          expect(u.chain.name).toMatch(/^pal-[A-Za-z0-9_.-]{1,24}$/);
          for (const r of u.chain.rules) expect(r).toMatch(SAFE_RULE);
        } else if (u.type === "ipset-update") {
          expect(u.name).toMatch(/^pal[A-Za-z0-9_.-]{1,28}$/);
          for (const m of u.members) expect(m).toMatch(/^[0-9a-f.:\/]+$/);
        }
      }
    }
    console.log(`hostile input: ${accepted} batches accepted, ${refused} refused`);
  });

  it("near-valid documents (edge-case identifiers, odd but legal values) are accepted and render safe tokens", async () => {
    const id = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_.-]{1,128}$/), fc.constantFrom("-", "_", "-j", "ACCEPT", "pal-FORWARD", "x".repeat(128), "a.b-c_d"));
    const cidr = fc.oneof(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(32)).map(([a, b, p]) => `198.${a}.${b}.0/${p}`),
      fc.tuple(fc.nat(0xffff), fc.nat(128)).map(([a, p]) => `2001:db8:${a.toString(16)}::/${p}`),
    );
    const port = fc.nat(65535).map((p) => ({ first: p, last: p }));
    const none: { first: number; last: number }[] = [];
    const m = (proto: string | undefined): fc.Arbitrary<Match> => fc.record({
      protocol: fc.constant(proto), srcNet: opt(cidr), dstNet: fc.constant(undefined), srcTag: opt(id), dstTag: opt(id),
      srcPorts: fc.constant(none), dstPorts: proto === "tcp" ? fc.array(port, { maxLength: 20 }) : fc.constant(none), icmpType: fc.constant(undefined), icmpCode: fc.constant(undefined),
    });
    const r: fc.Arbitrary<Rule> = fc.constantFrom<string | undefined>("tcp", "udp", "132", undefined)
      .chain((p) => fc.record({ action: fc.constantFrom(Action.ACTION_ALLOW, Action.ACTION_DENY), ipVersion: fc.constant(0), match: m(p), negated: m(undefined) }));
    const doc = fc.record({ id, tags: fc.array(id, { maxLength: 3 }), inboundRules: fc.array(r, { maxLength: 3 }), outboundRules: fc.array(r, { maxLength: 2 }), revision: fc.constant(0), labels: fc.constant({}) })
      .map((value): Document => ({ kind: { $case: "profile", value } }));
    let accepted = 0;
    await fc.assert(fc.asyncProperty(doc, async (d) => {
      try {
        await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: [d] }, 10_000);
        accepted++;
      } catch (e) {
        expect((e as RpcError).code).toBe(grpc.status.INVALID_ARGUMENT); // e.g. a mixed-family rule
      }
    }), { numRuns: 150, seed: 7, endOnFailure: true });
    expect(accepted).toBeGreaterThan(50);
    // Render every accepted profile on a host, as an endpoint using them all would.
    const graph = t.controller.graph;
    const ids = [...graph.profileIds()].slice(0, 60);
    await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: [{ kind: { $case: "endpoint", value: {
      host: "hostile-h", orchestrator: "o", workload: "w", id: "e", name: "tap-h", state: EndpointState.ENDPOINT_STATE_ACTIVE, mac: "",
      ipv4Nets: ["198.18.1.2/32"], ipv6Nets: [], profileIds: ids, labels: {}, revision: 0, network: "", addressPairs: [] } } }] }, 10_000);
    await new Promise((res) => setTimeout(res, 300));
    let rules = 0;
    for (const u of graph.snapshot("hostile-h").updates) {
      if (u.type !== "chain-update") continue;
      expect(u.chain.name).toMatch(/^pal-[A-Za-z0-9_.-]{1,24}$/);
      for (const rule of u.chain.rules) { expect(rule).toMatch(SAFE_RULE); rules++; }
    }
    expect(rules).toBeGreaterThan(50);
  });

  it("the CLI answers hostile files with exit 1 and one line, never a crash", async () => {
    const files = [
      "kind: Profile\nid: \"a\\nb\"\n", "kind: Profile\nid: x\ninbound_rules: [{protocol: \"tcp\\n-A FORWARD -j ACCEPT\"}]\n",
      "- ".repeat(2000) + "x\n", "[".repeat(5000), "kind: Endpoint\n" + "x: ".repeat(100) + "\n", "a: &a [*a]\n",
      "kind: Profile\nid: p\ntags: [" + Array.from({ length: 300 }, (_, i) => `t${i}`).join(",") + "]\n",
      "\u0000\u0001\u0002", "kind: Profile\nid: x\ninbound_rules: " + JSON.stringify(Array.from({ length: 1001 }, () => ({}))) + "\n",
    ];
    for (const f of files) {
      const r = await palisadectl(t.address, ["apply", "-f", "-"], f);
      expect(r.code, `${JSON.stringify(f.slice(0, 60))}: ${r.stderr}`).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    }
  });
});
