// The evaluator behind `palisadectl trace` and the differential oracle.
import { describe, expect, it } from "vitest";
import { AmbiguousAddressError, createEvaluator, parseDocuments, type Endpoint, type Profile } from "../../services/model/index.js";

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

// Networks (DESIGN §2.10) and address pairs (DESIGN §2.11).
describe("evaluate: networks and address pairs", () => {
  const tenant = (wl: string, net: string | undefined, ip4: string, profiles: string[], extra: Record<string, unknown> = {}) =>
    ep(wl, ip4, `2001:db8::${wl.length}`, profiles, { ...(net === undefined ? {} : { network: net }), ...extra });
  const webOnly = { kind: "Profile", id: "web-only", tags: [], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] };
  const sshOnly = { kind: "Profile", id: "ssh-only", tags: [], inbound_rules: [{ protocol: "tcp", dst_ports: [22] }], outbound_rules: [{}] };

  it("the same address on two networks: each endpoint judged by its own profiles, chosen by the network flags", () => {
    const m = model([
      open, webOnly, sshOnly,
      tenant("a1", "net-a", "198.18.5.10", ["open"]), tenant("a2", "net-a", "198.18.5.20", ["web-only"]),
      tenant("b1", "net-b", "198.18.5.10", ["open"]), tenant("b2", "net-b", "198.18.5.20", ["ssh-only"]),
    ]);
    const t = (from: string, to: string, port: number) =>
      m.trace({ src: "198.18.5.10", dst: "198.18.5.20", protocol: TCP, srcPort: 1, dstPort: port, fromNetwork: from, toNetwork: to });
    expect(t("net-a", "net-a", 80).verdict).toBe("allow");
    expect(t("net-a", "net-a", 22).verdict).toBe("deny");
    expect(t("net-b", "net-b", 22).verdict).toBe("allow");
    expect(t("net-b", "net-b", 80).verdict).toBe("deny");
    expect(t("net-b", "net-b", 22).steps).toEqual([
      { direction: "outbound", endpoint: "h/o/b1/e", network: "net-b", verdict: "allow", decision: { kind: "rule", profile: "open", ruleIndex: 0, action: "allow" } },
      { direction: "inbound", endpoint: "h/o/b2/e", network: "net-b", verdict: "allow", decision: { kind: "rule", profile: "ssh-only", ruleIndex: 0, action: "allow" } },
    ]);
    // A network where nobody holds the address: that side is no endpoint's.
    expect(t("net-a", "net-c", 22)).toMatchObject({ verdict: "allow", policed: true, steps: [{ endpoint: "h/o/a1/e" }] });
  });

  it("an address held on several networks and no flag: AmbiguousAddressError naming the networks and the flag", () => {
    const m = model([open, tenant("a1", "net-a", "198.18.5.10", ["open"]), tenant("d1", undefined, "198.18.5.10", ["open"]), tenant("b2", "net-b", "198.18.5.20", ["open"])]);
    let err: unknown;
    try {
      m.trace({ src: "198.18.5.10", dst: "198.18.5.20", protocol: TCP });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AmbiguousAddressError);
    expect(err).toMatchObject({ side: "src", address: "198.18.5.10", networks: ["", "net-a"] });
    expect((err as Error).message).toBe(`198.18.5.10 is held by endpoints on several networks (the default network, 'net-a'); say which with --from-network N ("" for the default network)`);
    // The receiver is on one network only: no flag needed for it.
    expect(m.trace({ src: "198.18.5.10", dst: "198.18.5.20", protocol: TCP, fromNetwork: "" }).steps.map((s) => s.endpoint)).toEqual(["h/o/d1/e", "h/o/b2/e"]);
    expect(() => m.trace({ src: "198.18.5.20", dst: "198.18.5.10", protocol: TCP })).toThrow(/--to-network N/);
    expect(m.trace({ src: "198.18.5.20", dst: "198.18.5.10", protocol: TCP, toNetwork: "net-a" }).steps[1]).toMatchObject({ endpoint: "h/o/a1/e", network: "net-a" });
  });

  it("the default network is \"\": an endpoint without network is found only with an empty flag or none", () => {
    const m = model([open, ...base4()]);
    expect(m.trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: TCP, fromNetwork: "", toNetwork: "" }).steps).toHaveLength(2);
    expect(m.trace({ src: "198.18.1.3", dst: "198.18.1.2", protocol: TCP, fromNetwork: "x", toNetwork: "x" })).toEqual({ verdict: "allow", steps: [], policed: false });
    function base4() {
      return [ep("a", "198.18.1.2", "2001:db8::2", ["open"]), ep("b", "198.18.1.3", "2001:db8::3", ["open"])];
    }
  });

  it("a pair makes its endpoint the sender and receiver of addresses inside it; the most specific holder wins", () => {
    const m = model([
      open, webOnly, sshOnly,
      ep("vm", "198.18.6.1", "2001:db8::1", ["open"], { address_pairs: [{ ip_address: "198.18.64.0/18" }, { ip_address: "2001:db8:1::/64" }] }),
      ep("narrow", "198.18.6.2", "2001:db8::2", ["ssh-only"], { address_pairs: [{ ip_address: "198.18.64.0/24" }] }),
      // A fixed address inside both pairs, and a /32 pair naming it: the fixed holder wins.
      ep("fixed", "198.18.64.7", "2001:db8::3", ["web-only"]),
      ep("vip", "198.18.6.4", "2001:db8::4", ["open"], { address_pairs: [{ ip_address: "198.18.64.7" }] }),
      ep("client", "198.18.6.5", "2001:db8::5", ["open"]),
    ]);
    const to = (dst: string, port: number) => m.trace({ src: "198.18.6.5", dst, protocol: TCP, srcPort: 1, dstPort: port });
    expect(to("198.18.100.1", 22).steps[1]).toMatchObject({ endpoint: "h/o/vm/e", verdict: "allow" });
    expect(to("198.18.64.9", 22).steps[1]).toMatchObject({ endpoint: "h/o/narrow/e", verdict: "allow" });
    expect(to("198.18.64.9", 80).steps[1]).toMatchObject({ endpoint: "h/o/narrow/e", verdict: "deny" });
    expect(to("198.18.64.7", 80).steps[1]).toMatchObject({ endpoint: "h/o/fixed/e", verdict: "allow" });
    expect(to("198.18.64.7", 22).steps[1]).toMatchObject({ endpoint: "h/o/fixed/e", verdict: "deny" });
    // Sending from a pair address: the pair's endpoint is the sender.
    expect(m.trace({ src: "2001:db8:1::99", dst: "2001:db8::5", protocol: TCP }).steps.map((s) => s.endpoint)).toEqual(["h/o/vm/e", "h/o/client/e"]);
    // Outside every pair and fixed address: no endpoint's.
    expect(to("198.18.128.1", 22)).toEqual({ verdict: "allow", steps: [expect.objectContaining({ endpoint: "h/o/client/e" })], policed: true });
  });

  it("equal holders on one network: the first in model order, as before networks existed", () => {
    const two = (first: string, second: string) => model([
      open, webOnly, sshOnly,
      ep("x", "198.18.7.1", "2001:db8::1", [first]), ep("y", "198.18.7.1", "2001:db8::2", [second]),
      ep("c", "198.18.7.9", "2001:db8::9", ["open"]),
    ]).trace({ src: "198.18.7.9", dst: "198.18.7.1", protocol: TCP, srcPort: 1, dstPort: 80 });
    expect(two("web-only", "ssh-only").steps[1]).toMatchObject({ endpoint: "h/o/x/e", verdict: "allow" });
    expect(two("ssh-only", "web-only").steps[1]).toMatchObject({ endpoint: "h/o/x/e", verdict: "deny" });
  });

  it("tags match any member's addresses and pair nets, on any network", () => {
    const m = model([
      open,
      { kind: "Profile", id: "db", tags: [], inbound_rules: [{ protocol: "tcp", src_tag: "app", dst_ports: [5432] }], outbound_rules: [{}] },
      { kind: "Profile", id: "app", tags: ["app"], inbound_rules: [], outbound_rules: [{}] },
      tenant("db", "net-a", "198.18.8.1", ["db"]),
      tenant("app", "net-b", "198.18.8.2", ["app"], { address_pairs: [{ ip_address: "198.18.96.0/20", mac_address: "00:00:5e:00:01:07" }] }),
      tenant("other", "net-a", "198.18.8.3", ["open"]),
    ]);
    const from = (src: string, net: string | undefined) => m.trace({ src, dst: "198.18.8.1", protocol: TCP, srcPort: 1, dstPort: 5432, ...(net === undefined ? {} : { fromNetwork: net }) });
    expect(from("198.18.8.2", "net-b").verdict).toBe("allow");
    expect(from("198.18.100.5", "net-b").verdict).toBe("allow");
    // The tag names the address, whatever network the sender is on (Neutron's remote groups).
    expect(from("198.18.8.2", "net-a")).toMatchObject({ verdict: "allow", steps: [{ direction: "inbound", endpoint: "h/o/db/e" }] });
    expect(from("198.18.8.3", undefined).verdict).toBe("deny");
    expect(from("198.18.112.1", undefined).verdict).toBe("deny");
  });
});
