// toDocument / toYaml are the inverse of parsing: parse -> toDocument -> parse is the identity.
import { describe, expect, it } from "vitest";
import { parseDocuments, splitDocuments, toDocument, toYaml } from "../../services/model/document.js";

const RAWS: unknown[] = [
  {
    kind: "Profile", id: "web", tags: ["web", "frontend"],
    inbound_rules: [
      {
        action: "deny", ip_version: 4, protocol: "TCP",
        src_net: "10.1.2.3/8", "!src_net": "10.1.0.0/16", dst_net: "198.18.0.0/15", "!dst_net": "198.18.1.7",
        src_tag: "a", "!src_tag": "b", dst_tag: "c", "!dst_tag": "d",
        src_ports: [1024, "2000:3000"], "!src_ports": [2500], dst_ports: [80, "443", "8000:8080"], "!dst_ports": ["8001:8002"],
      },
      { protocol: "icmp", icmp_type: 8, icmp_code: 0, "!icmp_type": 3 },
      { protocol: "icmpv6", icmp_type: 128, ip_version: 6 },
      { protocol: 17, dst_ports: [53] },
      { "!protocol": 132 },
      { src_net: "2001:0DB8::1/64" },
      {},
    ],
    outbound_rules: [{ action: "allow" }],
  },
  { kind: "Profile", id: "empty" },
  {
    kind: "Endpoint", host: "hv1", orchestrator: "openstack", workload: "vm-1", id: "port-1", name: "tap0a1b2c3d", state: "active",
    mac: "02:AB:00:00:00:01", ipv4_nets: ["198.18.1.2", "198.18.1.3/32"], ipv6_nets: ["2001:DB8::2"],
    ipv4_gateway: "198.18.1.1", ipv6_gateway: "2001:db8::ff", profile_id: "web", labels: { app: "web" },
  },
  { kind: "Endpoint", host: "hv2", orchestrator: "k8s", workload: "ns.pod", id: "eth0", name: "veth1", state: "inactive", profile_ids: ["b", "a"] },
];

describe("document round trip", () => {
  const model = parseDocuments(RAWS);

  it("parse -> toDocument -> parse gives a deep-equal model", () => {
    expect(parseDocuments(model.map(toDocument))).toEqual(model);
  });

  it("parse -> toYaml -> splitDocuments -> parse gives a deep-equal model", () => {
    const yaml = toYaml(model.map(toDocument));
    expect(yaml.split("\n").filter((l) => l === "---")).toHaveLength(model.length - 1);
    expect(parseDocuments(splitDocuments(yaml))).toEqual(model);
  });

  it("parse -> JSON -> parse gives a deep-equal model", () => {
    expect(parseDocuments(splitDocuments(JSON.stringify(model.map(toDocument))))).toEqual(model);
  });

  it("toDocument is a fixed point: documents of a re-parsed model are identical", () => {
    const docs = model.map(toDocument);
    expect(parseDocuments(docs).map(toDocument)).toEqual(docs);
  });

  it("writes Calico v1 spellings, canonical values and the plural profile_ids", () => {
    const [web, , ep] = model.map(toDocument);
    const rule0 = (web!.inbound_rules as Record<string, unknown>[])[0]!;
    expect(rule0).toMatchObject({
      action: "deny", ip_version: 4, protocol: "tcp", src_net: "10.0.0.0/8", "!src_net": "10.1.0.0/16",
      "!dst_net": "198.18.1.7/32", dst_ports: [80, 443, "8000:8080"], "!dst_ports": ["8001:8002"],
    });
    // a numeric protocol is written back as a number
    expect((web!.inbound_rules as Record<string, unknown>[])[3]).toEqual({ action: "allow", protocol: 17, dst_ports: [53] });
    expect((web!.inbound_rules as Record<string, unknown>[])[4]).toEqual({ action: "allow", "!protocol": 132 });
    expect(ep).toMatchObject({ mac: "02:ab:00:00:00:01", ipv4_nets: ["198.18.1.2/32", "198.18.1.3/32"], ipv6_nets: ["2001:db8::2/128"], profile_ids: ["web"] });
    expect(ep).not.toHaveProperty("profile_id");
  });

  it("omits empty labels and absent optional fields", () => {
    const doc = toDocument(model[3]!);
    expect(doc).not.toHaveProperty("labels");
    expect(doc).not.toHaveProperty("mac");
    expect(doc).not.toHaveProperty("ipv4_gateway");
    expect(doc.profile_ids).toEqual(["b", "a"]);
  });
});
