// parseDocuments: Calico v1 spellings -> normalised model objects (DESIGN §2, §3.1).
import { EXAMPLE_ENDPOINT_YAML } from "../support/documents.js";
import { describe, expect, it } from "vitest";
import { parseDocuments, splitDocuments, toDocument } from "../../services/model/document.js";
import type { Endpoint, Profile } from "../../services/model/types.js";

const profileOf = (raw: unknown): Profile => {
  const [o] = parseDocuments([raw]);
  if (o?.kind !== "Profile") throw new Error("not a profile");
  return o.profile;
};
const endpointOf = (raw: unknown): Endpoint => {
  const [o] = parseDocuments([raw]);
  if (o?.kind !== "Endpoint") throw new Error("not an endpoint");
  return o.endpoint;
};

const EP = { kind: "Endpoint", host: "hv1", orchestrator: "openstack", workload: "vm-1", id: "port-1", name: "tap0a1b2c3d", state: "active" };

describe("parseDocuments: the DESIGN §3 example", () => {
  it("parses the example stream into one Profile and one Endpoint", () => {
    const text = `
kind: Profile
id: db
tags: [db]
inbound_rules:
  - {action: allow, protocol: tcp, src_tag: db-user, dst_ports: [5432]}
outbound_rules:
  - {action: allow}
---
${EXAMPLE_ENDPOINT_YAML}`;
    expect(parseDocuments(splitDocuments(text))).toEqual([
      {
        kind: "Profile",
        profile: {
          id: "db",
          tags: ["db"],
          inboundRules: [{ action: "allow", match: { protocol: "tcp", srcTag: "db-user", dstPorts: [{ first: 5432, last: 5432 }] }, negated: {} }],
          outboundRules: [{ action: "allow", match: {}, negated: {} }],
          labels: {},
        },
      },
      {
        kind: "Endpoint",
        endpoint: {
          host: "hv1", orchestrator: "openstack", workload: "vm-1", id: "port-1", name: "tap0a1b2c3d", state: "active",
          mac: "02:00:00:00:00:01", ipv4Nets: ["198.18.1.2/32"], ipv6Nets: [], profileIds: ["db"], labels: {},
        },
      },
    ]);
  });
});

describe("parseDocuments: rules", () => {
  it("defaults action to allow and leaves absent criteria absent", () => {
    const p = profileOf({ kind: "Profile", id: "p", inbound_rules: [{}] });
    expect(p.inboundRules[0]).toEqual({ action: "allow", match: {}, negated: {} });
    expect(p.inboundRules[0]).not.toHaveProperty("ipVersion");
    expect(p.outboundRules).toEqual([]);
    expect(p.tags).toEqual([]);
  });

  it("reads every positive and negated criterion, Calico v1 spelling", () => {
    const p = profileOf({
      kind: "Profile", id: "web",
      inbound_rules: [{
        action: "deny", ip_version: 4, protocol: "TCP",
        src_net: "10.1.2.3/8", "!src_net": "10.1.0.0/16",
        dst_net: "198.18.0.0/15", "!dst_net": "198.18.1.7",
        src_tag: "a", "!src_tag": "b", dst_tag: "c", "!dst_tag": "d",
        src_ports: [1024, "2000:3000"], "!src_ports": [2500],
        dst_ports: [80, "443", "8000:8080"], "!dst_ports": ["8001:8002", 8003],
      }],
      outbound_rules: [{
        protocol: "icmp", icmp_type: 8, icmp_code: 0, "!icmp_type": 3, "!icmp_code": 1,
      }],
    });
    expect(p.inboundRules[0]).toEqual({
      action: "deny",
      ipVersion: 4,
      match: {
        protocol: "tcp", srcNet: "10.0.0.0/8", dstNet: "198.18.0.0/15", srcTag: "a", dstTag: "c",
        srcPorts: [{ first: 1024, last: 1024 }, { first: 2000, last: 3000 }],
        dstPorts: [{ first: 80, last: 80 }, { first: 443, last: 443 }, { first: 8000, last: 8080 }],
      },
      negated: {
        srcNet: "10.1.0.0/16", dstNet: "198.18.1.7/32", srcTag: "b", dstTag: "d",
        srcPorts: [{ first: 2500, last: 2500 }],
        dstPorts: [{ first: 8001, last: 8002 }, { first: 8003, last: 8003 }],
      },
    });
    expect(p.outboundRules[0]).toEqual({
      action: "allow",
      match: { protocol: "icmp", icmpType: 8, icmpCode: 0 },
      negated: { icmpType: 3, icmpCode: 1 },
    });
  });

  it("accepts a negated protocol", () => {
    const p = profileOf({ kind: "Profile", id: "p", inbound_rules: [{ "!protocol": "udp" }] });
    expect(p.inboundRules[0]!.negated).toEqual({ protocol: "udp" });
    expect(p.inboundRules[0]!.match).toEqual({});
  });

  it("reads a numeric protocol as its decimal string", () => {
    const p = profileOf({ kind: "Profile", id: "p", inbound_rules: [{ protocol: 17, dst_ports: [53] }, { protocol: "132" }] });
    expect(p.inboundRules[0]!.match.protocol).toBe("17");
    expect(p.inboundRules[1]!.match.protocol).toBe("132");
  });

  it("canonicalises IPv6 CIDRs (host bits cleared, compressed, lower case)", () => {
    const p = profileOf({
      kind: "Profile", id: "p",
      inbound_rules: [{ src_net: "2001:0DB8:0000:0000:0000:0000:0000:0001/64", "!dst_net": "2001:db8:0:0:1:0:0:1" }],
    });
    expect(p.inboundRules[0]!.match.srcNet).toBe("2001:db8::/64");
    expect(p.inboundRules[0]!.negated.dstNet).toBe("2001:db8::1:0:0:1/128");
  });
});

describe("parseDocuments: endpoints", () => {
  it("turns bare addresses into host routes and canonicalises them", () => {
    const e = endpointOf({ ...EP, ipv4_nets: ["198.18.1.2", "198.18.1.3/32"], ipv6_nets: ["2001:DB8:0::0:1", "2001:db8::2/128"] });
    expect(e.ipv4Nets).toEqual(["198.18.1.2/32", "198.18.1.3/32"]);
    expect(e.ipv6Nets).toEqual(["2001:db8::1/128", "2001:db8::2/128"]);
  });

  it("lower-cases the MAC", () => {
    expect(endpointOf({ ...EP, mac: "02:AB:CD:00:0E:FF" }).mac).toBe("02:ab:cd:00:0e:ff");
  });

  it("omits optional fields that were not given", () => {
    const e = endpointOf(EP);
    expect(e).not.toHaveProperty("mac");
    expect(e).not.toHaveProperty("ipv4Gateway");
    expect(e).not.toHaveProperty("ipv6Gateway");
    expect(e).toMatchObject({ ipv4Nets: [], ipv6Nets: [], profileIds: [], labels: {} });
  });

  it("accepts the legacy single profile_id form", () => {
    expect(endpointOf({ ...EP, profile_id: "db" }).profileIds).toEqual(["db"]);
  });

  it("keeps profile_ids in the given order", () => {
    expect(endpointOf({ ...EP, profile_ids: ["z", "a", "m"] }).profileIds).toEqual(["z", "a", "m"]);
  });

  it("reads gateways, labels and the inactive state", () => {
    const e = endpointOf({
      ...EP, state: "inactive", ipv4_gateway: "198.18.1.1", ipv6_gateway: "2001:db8::ff", labels: { app: "web", "k8s.io/role": "db" },
    });
    expect(e).toMatchObject({
      state: "inactive", ipv4Gateway: "198.18.1.1", ipv6Gateway: "2001:db8::ff", labels: { app: "web", "k8s.io/role": "db" },
    });
  });

  it("parses a batch in order, mixing kinds", () => {
    const objs = parseDocuments([
      { kind: "Profile", id: "a" },
      { ...EP, id: "p1" },
      { kind: "Profile", id: "b" },
      { ...EP, id: "p2", host: "hv2" },
    ]);
    expect(objs.map((o) => (o.kind === "Profile" ? `P:${o.profile.id}` : `E:${o.endpoint.host}/${o.endpoint.id}`))).toEqual([
      "P:a", "E:hv1/p1", "P:b", "E:hv2/p2",
    ]);
  });

  it("an endpoint with the same id on another host is a different object", () => {
    expect(parseDocuments([{ ...EP }, { ...EP, host: "hv2" }])).toHaveLength(2);
  });
});

describe("profile labels", () => {
  it("are parsed, round-trip through the document form, and are validated like endpoint labels", () => {
    const [o] = parseDocuments(splitDocuments("kind: Profile\nid: web\nlabels: {palisade.io/owner: openstack}\n"));
    expect(o).toMatchObject({ kind: "Profile", profile: { id: "web", labels: { "palisade.io/owner": "openstack" } } });
    expect(toDocument(o!)).toMatchObject({ labels: { "palisade.io/owner": "openstack" } });
    expect(() => parseDocuments(splitDocuments("kind: Profile\nid: web\nlabels: {owner: 'a b'}\n"))).toThrow(/labels\.owner/);
  });
});
