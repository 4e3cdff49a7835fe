// The evaluator behind `palisadectl trace` and the differential oracle.
import { describe, expect, it } from "vitest";
import { createEvaluator, parseDocuments, type Endpoint, type Profile } from "../../services/model/index.js";

function model(raw: unknown[]) {
  const objs = parseDocuments(raw);
  const profiles = new Map<string, Profile>();
  const endpoints: Endpoint[] = [];
  for (const o of objs) (o.kind === "Profile" ? profiles.set(o.profile.id, o.profile) : endpoints.push(o.endpoint));
  return createEvaluator({ profiles, endpoints });
}
const ep = (wl: string, ip4: string, ip6: string, profiles: string[], extra: Record<string, unknown> = {}) =>
  ({ kind: "Endpoint", host: "h", orchestrator: "o", workload: wl, id: "e", name: `tap${wl}`, state: "active", ipv4_nets: [ip4], ipv6_nets: [ip6], profile_ids: profiles, ...extra });
const open = { kind: "Profile", id: "open", tags: [], inbound_rules: [{}], outbound_rules: [{}] };
const TCP = 6, UDP = 17;

describe("evaluate", () => {
  const base = [
    { kind: "Profile", id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }], outbound_rules: [{}] },
    { kind: "Profile", id: "app", tags: ["db-user"], inbound_rules: [], outbound_rules: [{}] },
    ep("db", "198.18.1.2", "2001:db8::2", ["db"]),
    ep("app", "198.18.1.3", "2001:db8::3", ["app"]),
    ep("web", "198.18.1.4", "2001:db8::4", ["open"]),
    open,
  ];

  it("allows a tag member to the port, with the deciding rule of each side", () => {
    const r = model(base).trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: TCP, srcPort: 40000, dstPort: 5432 });
    expect(r.verdict).toBe("allow");
    expect(r.steps).toEqual([
      { direction: "outbound", endpoint: "h/o/app/e", verdict: "allow", decision: { kind: "rule", profile: "app", ruleIndex: 0, action: "allow" } },
      { direction: "inbound", endpoint: "h/o/db/e", verdict: "allow", decision: { kind: "rule", profile: "db", ruleIndex: 0, action: "allow" } },
    ]);
  });

  it("denies non-members and other ports by default deny; IPv6 the same", () => {
    const m = model(base);
    expect(m.trace({ src: "198.18.1.4", dst: "198.18.1.2", protocol: TCP, srcPort: 1, dstPort: 5432 }).steps[1]!.decision).toEqual({ kind: "default-deny" });
    expect(m.trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: TCP, srcPort: 1, dstPort: 5433 }).verdict).toBe("deny");
    expect(m.trace({ src: "2001:db8::3", dst: "2001:db8:0:0::2", protocol: TCP, srcPort: 1, dstPort: 5432 }).verdict).toBe("allow");
    expect(m.trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: UDP, srcPort: 1, dstPort: 5432 }).verdict).toBe("deny");
  });

  it("first match in profile order decides; a missing profile denies; inactive denies", () => {
    const m = model([
      { kind: "Profile", id: "deny-db", tags: [], inbound_rules: [{ action: "deny", protocol: "tcp", dst_ports: [5432] }], outbound_rules: [] },
      open,
      ep("a", "198.18.1.2", "2001:db8::2", ["deny-db", "open"]),
      ep("b", "198.18.1.3", "2001:db8::3", ["open", "deny-db"]),
      ep("c", "198.18.1.4", "2001:db8::4", ["open", "ghost"]),
      ep("d", "198.18.1.5", "2001:db8::5", ["ghost", "open"]),
      ep("e", "198.18.1.6", "2001:db8::6", ["open"], { state: "inactive" }),
    ]);
    const to = (dst: string) => m.trace({ src: "198.18.1.4", dst, protocol: TCP, srcPort: 1, dstPort: 5432 });
    expect(to("198.18.1.2").steps[1]!.decision).toEqual({ kind: "rule", profile: "deny-db", ruleIndex: 0, action: "deny" });
    expect(to("198.18.1.3").verdict).toBe("allow");
    expect(to("198.18.1.5").steps[1]!.decision).toEqual({ kind: "missing-profile", profile: "ghost" });
    expect(to("198.18.1.6").steps[1]!.decision).toEqual({ kind: "inactive" });
    // c's own outbound: "open" allows before the missing profile is reached.
    expect(to("198.18.1.3").steps[0]!.decision.kind).toBe("rule");
  });

  it("negated criteria: each negated criterion must not hold", () => {
    const m = model([
      { kind: "Profile", id: "n", tags: [], inbound_rules: [{ protocol: "tcp", "!dst_ports": [22, "1000:2000"], "!src_net": "198.18.1.4/32", "!src_tag": "nobody" }], outbound_rules: [{}] },
      open,
      ep("a", "198.18.1.2", "2001:db8::2", ["n"]),
      ep("b", "198.18.1.3", "2001:db8::3", ["open"]),
      ep("c", "198.18.1.4", "2001:db8::4", ["open"]),
    ]);
    const t = (src: string, port: number) => m.trace({ src, dst: "198.18.1.2", protocol: TCP, srcPort: 40000, dstPort: port }).verdict;
    expect(t("198.18.1.3", 80)).toBe("allow");
    expect(t("198.18.1.3", 22)).toBe("deny");
    expect(t("198.18.1.3", 1500)).toBe("deny");
    expect(t("198.18.1.4", 80)).toBe("deny");
  });

  it("ICMP type and code form one criterion, as iptables' --icmp-type T/C does", () => {
    const m = model([
      { kind: "Profile", id: "i", tags: [], inbound_rules: [{ protocol: "icmp", "!icmp_type": 8, "!icmp_code": 1 }, { action: "deny" }], outbound_rules: [{}] },
      open,
      ep("a", "198.18.1.2", "2001:db8::2", ["i"]),
      ep("b", "198.18.1.3", "2001:db8::3", ["open"]),
    ]);
    const t = (type: number, code: number) => m.trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: 1, icmpType: type, icmpCode: code }).verdict;
    expect(t(8, 1)).toBe("deny");
    expect(t(8, 0)).toBe("allow");
    expect(t(0, 1)).toBe("allow");
  });

  it("a rule of one family never matches the other; unpoliced addresses are reported as such", () => {
    const m = model([
      { kind: "Profile", id: "v4", tags: [], inbound_rules: [{ ip_version: 4 }], outbound_rules: [{}] },
      ep("a", "198.18.1.2", "2001:db8::2", ["v4"]),
      ep("b", "198.18.1.3", "2001:db8::3", ["v4"]),
    ]);
    expect(m.trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: TCP, srcPort: 1, dstPort: 1 }).verdict).toBe("allow");
    expect(m.trace({ src: "2001:db8::3", dst: "2001:db8::2", protocol: TCP, srcPort: 1, dstPort: 1 }).verdict).toBe("deny");
    const r = m.trace({ src: "192.0.2.1", dst: "192.0.2.2", protocol: TCP, srcPort: 1, dstPort: 1 });
    expect(r).toEqual({ verdict: "allow", steps: [], policed: false });
    expect(() => m.trace({ src: "198.18.1.3", dst: "2001:db8::2", protocol: TCP })).toThrow(/one IP family/);
  });
});
