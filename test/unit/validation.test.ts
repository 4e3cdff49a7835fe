// Validation tables: every refusal names the document, the field (with its
// path, Calico spelling) and the reason (DESIGN §2, §3.2).
import { describe, expect, it } from "vitest";
import { parseDocuments } from "../../services/model/document.js";
import { ValidationError, formatIssue, type ValidationIssue } from "../../services/model/errors.js";

type Raw = Record<string, unknown>;

const EP: Raw = { kind: "Endpoint", host: "hv1", orchestrator: "openstack", workload: "vm-1", id: "port-1", name: "tap0a1b2c3d", state: "active" };
const EP_NAME = "Endpoint hv1/openstack/vm-1/port-1";
const profile = (extra: Raw): Raw => ({ kind: "Profile", id: "db", ...extra });
const inbound = (rule: Raw): Raw => profile({ inbound_rules: [rule] });

function issuesOf(raws: unknown[]): ValidationIssue[] {
  try {
    parseDocuments(raws);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as ValidationError).issues;
  }
  return [];
}

interface Case {
  what: string;
  doc: Raw | unknown;
  document: string;
  field: string;
  reason: RegExp;
}

const refused: Case[] = [
  // --- structure
  { what: "unknown top-level key (Profile)", doc: profile({ tag: ["x"] }), document: "Profile db", field: "tag", reason: /^unknown field$/ },
  { what: "unknown top-level key (Endpoint)", doc: { ...EP, profiles: ["db"] }, document: EP_NAME, field: "profiles", reason: /^unknown field$/ },
  { what: "unknown rule key", doc: inbound({ src_port: [80] }), document: "Profile db", field: "inbound_rules[0].src_port", reason: /^unknown field$/ },
  { what: "negated key that has no negated form", doc: inbound({ "!action": "deny" }), document: "Profile db", field: "inbound_rules[0].!action", reason: /^unknown field$/ },
  { what: "negated ip_version", doc: inbound({ "!ip_version": 4 }), document: "Profile db", field: "inbound_rules[0].!ip_version", reason: /^unknown field$/ },
  { what: "kind missing", doc: { id: "db" }, document: "document 1", field: "kind", reason: /is required/ },
  { what: "kind unknown", doc: { kind: "Policy", id: "db" }, document: "document 1", field: "kind", reason: /'Policy' is not Profile or Endpoint/ },
  { what: "document not a mapping", doc: "hello", document: "document 1", field: "", reason: /must be a mapping/ },
  { what: "document is null", doc: null, document: "document 1", field: "", reason: /must be a mapping/ },
  { what: "rule not a mapping", doc: profile({ inbound_rules: ["allow"] }), document: "Profile db", field: "inbound_rules[0]", reason: /must be a mapping/ },
  { what: "rules not a list", doc: profile({ outbound_rules: { action: "allow" } }), document: "Profile db", field: "outbound_rules", reason: /must be a list/ },
  { what: "tags not a list", doc: profile({ tags: "db" }), document: "Profile db", field: "tags", reason: /must be a list/ },
  { what: "tag not a string", doc: profile({ tags: ["a", 5] }), document: "Profile db", field: "tags[1]", reason: /must be a string/ },
  { what: "id not a string", doc: { kind: "Profile", id: 5 }, document: "document 1", field: "id", reason: /must be a string/ },
  { what: "profile id missing", doc: { kind: "Profile" }, document: "document 1", field: "id", reason: /is required/ },
  { what: "endpoint host missing", doc: { ...EP, host: undefined }, document: "document 1", field: "host", reason: /is required/ },
  { what: "endpoint name missing", doc: { ...EP, name: undefined }, document: EP_NAME, field: "name", reason: /is required/ },
  { what: "ip_version not an integer", doc: inbound({ ip_version: "4" }), document: "Profile db", field: "inbound_rules[0].ip_version", reason: /must be an integer/ },
  { what: "icmp_type not an integer", doc: inbound({ protocol: "icmp", icmp_type: 8.5 }), document: "Profile db", field: "inbound_rules[0].icmp_type", reason: /must be an integer/ },
  { what: "protocol a list", doc: inbound({ protocol: ["tcp"] }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /string or an integer/ },
  { what: "labels not a mapping", doc: { ...EP, labels: ["a"] }, document: EP_NAME, field: "labels", reason: /mapping of strings/ },
  { what: "label value not a string", doc: { ...EP, labels: { a: 1 } }, document: EP_NAME, field: "labels.a", reason: /must be a string/ },
  { what: "profile_id and profile_ids both", doc: { ...EP, profile_ids: ["a"], profile_id: "b" }, document: EP_NAME, field: "profile_id", reason: /not both/ },

  // --- identifiers
  { what: "profile id with a space", doc: { kind: "Profile", id: "db 1" }, document: "Profile db 1", field: "id", reason: /only letters, digits/ },
  { what: "profile id with a slash", doc: { kind: "Profile", id: "a/b" }, document: "Profile a/b", field: "id", reason: /only letters, digits/ },
  { what: "profile id '.'", doc: { kind: "Profile", id: "." }, document: "Profile .", field: "id", reason: /only letters, digits/ },
  { what: "profile id '..'", doc: { kind: "Profile", id: ".." }, document: "Profile ..", field: "id", reason: /only letters, digits/ },
  { what: "profile id empty", doc: { kind: "Profile", id: "" }, document: "Profile ", field: "id", reason: /must not be empty/ },
  { what: "profile id 129 chars", doc: { kind: "Profile", id: "a".repeat(129) }, document: `Profile ${"a".repeat(64)}…`, field: "id", reason: /at most 128 characters/ },
  { what: "profile id non-ASCII", doc: { kind: "Profile", id: "dé" }, document: "Profile dé", field: "id", reason: /only letters, digits/ },
  { what: "tag with a colon", doc: profile({ tags: ["ok", "a:b"] }), document: "Profile db", field: "tags[1]", reason: /only letters, digits/ },
  { what: "src_tag with a space", doc: inbound({ src_tag: "db user" }), document: "Profile db", field: "inbound_rules[0].src_tag", reason: /only letters, digits/ },
  { what: "negated dst_tag empty", doc: inbound({ "!dst_tag": "" }), document: "Profile db", field: "inbound_rules[0].!dst_tag", reason: /must not be empty/ },
  { what: "workload with a slash", doc: { ...EP, workload: "vm/1" }, document: "Endpoint hv1/openstack/vm/1/port-1", field: "workload", reason: /only letters, digits/ },
  { what: "host 254 chars", doc: { ...EP, host: "h".repeat(254) }, document: `Endpoint ${("h".repeat(254) + "/openstack/vm-1/port-1").slice(0, 64)}…`, field: "host", reason: /at most 253/ },
  { what: "profile_ids entry invalid", doc: { ...EP, profile_ids: ["ok", "not ok"] }, document: EP_NAME, field: "profile_ids[1]", reason: /only letters, digits/ },
  { what: "duplicate profile id", doc: { ...EP, profile_ids: ["a", "b", "a"] }, document: EP_NAME, field: "profile_ids[2]", reason: /duplicate profile 'a'/ },

  // --- interface, state, mac, nets
  { what: "interface name 16 chars", doc: { ...EP, name: "tap0123456789abc" }, document: EP_NAME, field: "name", reason: /1-15 characters/ },
  { what: "interface name with '.'", doc: { ...EP, name: "eth0.100" }, document: EP_NAME, field: "name", reason: /1-15 characters/ },
  { what: "interface name empty", doc: { ...EP, name: "" }, document: EP_NAME, field: "name", reason: /1-15 characters/ },
  { what: "interface name with '+'", doc: { ...EP, name: "tap+" }, document: EP_NAME, field: "name", reason: /1-15 characters/ },
  { what: "state unknown", doc: { ...EP, state: "up" }, document: EP_NAME, field: "state", reason: /active or inactive/ },
  { what: "mac too short", doc: { ...EP, mac: "02:00:00:00:00" }, document: EP_NAME, field: "mac", reason: /MAC address/ },
  { what: "mac with dashes", doc: { ...EP, mac: "02-00-00-00-00-01" }, document: EP_NAME, field: "mac", reason: /MAC address/ },
  { what: "ipv4_nets not /32", doc: { ...EP, ipv4_nets: ["198.18.1.2/32", "198.18.0.0/24"] }, document: EP_NAME, field: "ipv4_nets[1]", reason: /host route \(\/32\)/ },
  { what: "ipv6_nets not /128", doc: { ...EP, ipv6_nets: ["2001:db8::/64"] }, document: EP_NAME, field: "ipv6_nets[0]", reason: /host route \(\/128\)/ },
  { what: "IPv6 address in ipv4_nets", doc: { ...EP, ipv4_nets: ["2001:db8::1/128"] }, document: EP_NAME, field: "ipv4_nets[0]", reason: /not an IPv4 address/ },
  { what: "IPv4 address in ipv6_nets", doc: { ...EP, ipv6_nets: ["198.18.1.2/32"] }, document: EP_NAME, field: "ipv6_nets[0]", reason: /not an IPv6 address/ },
  { what: "garbage in ipv4_nets", doc: { ...EP, ipv4_nets: ["256.1.1.1"] }, document: EP_NAME, field: "ipv4_nets[0]", reason: /not an IPv4 address/ },
  { what: "ipv4_gateway not an address", doc: { ...EP, ipv4_gateway: "198.18.0.0/24" }, document: EP_NAME, field: "ipv4_gateway", reason: /IPv4 address/ },
  { what: "label key with a space", doc: { ...EP, labels: { "a b": "c" } }, document: EP_NAME, field: "labels.a b", reason: /label keys/ },
  { what: "label value 64 chars", doc: { ...EP, labels: { a: "v".repeat(64) } }, document: EP_NAME, field: "labels.a", reason: /label values/ },

  // --- ports
  { what: "port 65536", doc: inbound({ protocol: "tcp", dst_ports: [80, 65536] }), document: "Profile db", field: "inbound_rules[0].dst_ports[1]", reason: /0-65535/ },
  { what: "port '65536' as a string", doc: inbound({ protocol: "tcp", dst_ports: ["65536"] }), document: "Profile db", field: "inbound_rules[0].dst_ports[0]", reason: /0-65535/ },
  { what: "port range ending at 65536", doc: inbound({ protocol: "tcp", src_ports: ["1000:65536"] }), document: "Profile db", field: "inbound_rules[0].src_ports[0]", reason: /0-65535/ },
  { what: "negative port", doc: inbound({ protocol: "udp", dst_ports: [-1] }), document: "Profile db", field: "inbound_rules[0].dst_ports[0]", reason: /0-65535/ },
  { what: "range 80:80 (N<M required)", doc: inbound({ protocol: "tcp", dst_ports: [22, "80:80"] }), document: "Profile db", field: "inbound_rules[0].dst_ports[1]", reason: /'80:80' must have N < M/ },
  { what: "range 90:80", doc: inbound({ protocol: "tcp", dst_ports: ["90:80"] }), document: "Profile db", field: "inbound_rules[0].dst_ports[0]", reason: /'90:80' must have N < M/ },
  { what: "range with a dash", doc: inbound({ protocol: "tcp", dst_ports: ["80-90"] }), document: "Profile db", field: "inbound_rules[0].dst_ports[0]", reason: /not a port/ },
  { what: "port as a float", doc: inbound({ protocol: "tcp", dst_ports: [80.5] }), document: "Profile db", field: "inbound_rules[0].dst_ports[0]", reason: /not a port/ },
  { what: "ports not a list", doc: inbound({ protocol: "tcp", dst_ports: 80 }), document: "Profile db", field: "inbound_rules[0].dst_ports", reason: /must be a list/ },
  { what: "ports without a protocol", doc: inbound({ dst_ports: [80] }), document: "Profile db", field: "inbound_rules[0].dst_ports", reason: /only with protocol tcp, udp, sctp or udplite/ },
  { what: "ports with icmp", doc: inbound({ protocol: "icmp", src_ports: [80] }), document: "Profile db", field: "inbound_rules[0].src_ports", reason: /only with protocol tcp, udp, sctp or udplite/ },
  { what: "negated ports without a protocol", doc: inbound({ "!dst_ports": [80] }), document: "Profile db", field: "inbound_rules[0].!dst_ports", reason: /only with protocol/ },
  { what: "ports with only a negated protocol", doc: inbound({ "!protocol": "tcp", dst_ports: [80] }), document: "Profile db", field: "inbound_rules[0].dst_ports", reason: /only with protocol/ },
  { what: "empty port list", doc: inbound({ protocol: "tcp", dst_ports: [] }), document: "Profile db", field: "inbound_rules[0].dst_ports", reason: /must not be an empty list/ },
  { what: "empty negated port list", doc: inbound({ protocol: "tcp", "!src_ports": [] }), document: "Profile db", field: "inbound_rules[0].!src_ports", reason: /must not be an empty list/ },
  { what: "513 ports", doc: inbound({ protocol: "tcp", dst_ports: Array.from({ length: 513 }, (_, i) => i) }), document: "Profile db", field: "inbound_rules[0].dst_ports", reason: /at most 512/ },

  // --- ICMP
  { what: "icmp_code without icmp_type", doc: inbound({ protocol: "icmp", icmp_code: 0 }), document: "Profile db", field: "inbound_rules[0].icmp_code", reason: /together with inbound_rules\[0\]\.icmp_type/ },
  { what: "!icmp_code without !icmp_type", doc: inbound({ protocol: "icmp", icmp_type: 3, "!icmp_code": 1 }), document: "Profile db", field: "inbound_rules[0].!icmp_code", reason: /together with inbound_rules\[0\]\.!icmp_type/ },
  { what: "icmp_type 255", doc: inbound({ protocol: "icmp", icmp_type: 255 }), document: "Profile db", field: "inbound_rules[0].icmp_type", reason: /0-254/ },
  { what: "icmp_type -1", doc: inbound({ protocol: "icmp", icmp_type: -1 }), document: "Profile db", field: "inbound_rules[0].icmp_type", reason: /0-254/ },
  { what: "!icmp_type 255", doc: inbound({ protocol: "icmpv6", "!icmp_type": 255 }), document: "Profile db", field: "inbound_rules[0].!icmp_type", reason: /0-254/ },
  { what: "icmp_code 256", doc: inbound({ protocol: "icmp", icmp_type: 3, icmp_code: 256 }), document: "Profile db", field: "inbound_rules[0].icmp_code", reason: /0-255/ },
  { what: "icmp_type without a protocol", doc: inbound({ icmp_type: 8 }), document: "Profile db", field: "inbound_rules[0].icmp_type", reason: /only with protocol icmp or icmpv6/ },
  { what: "icmp_type with tcp", doc: inbound({ protocol: "tcp", icmp_type: 8 }), document: "Profile db", field: "inbound_rules[0].icmp_type", reason: /only with protocol icmp or icmpv6/ },
  { what: "protocol icmp with ip_version 6", doc: inbound({ protocol: "icmp", ip_version: 6 }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /icmp is IPv4/ },
  { what: "protocol 1 with ip_version 6", doc: inbound({ protocol: 1, ip_version: 6 }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /icmp is IPv4/ },
  { what: "protocol icmpv6 with ip_version 4", doc: inbound({ protocol: "icmpv6", ip_version: 4 }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /icmpv6 is IPv6/ },

  // --- protocol, action, ip_version, nets
  { what: "protocol unknown name", doc: inbound({ protocol: "gre" }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /^must be one of icmp, tcp, udp, icmpv6, sctp, udplite or a number 1-255$/ },
  { what: "protocol 0", doc: inbound({ protocol: 0 }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /1-255/ },
  { what: "protocol 256", doc: inbound({ protocol: 256 }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /1-255/ },
  { what: "protocol '06' (leading zero)", doc: inbound({ protocol: "06" }), document: "Profile db", field: "inbound_rules[0].protocol", reason: /1-255/ },
  { what: "negated protocol unknown", doc: inbound({ "!protocol": "bogus" }), document: "Profile db", field: "inbound_rules[0].!protocol", reason: /1-255/ },
  { what: "action reject", doc: profile({ outbound_rules: [{ action: "reject" }] }), document: "Profile db", field: "outbound_rules[0].action", reason: /allow or deny/ },
  { what: "ip_version 5", doc: inbound({ ip_version: 5 }), document: "Profile db", field: "inbound_rules[0].ip_version", reason: /4 or 6/ },
  { what: "src_net /33", doc: inbound({ src_net: "10.0.0.0/33" }), document: "Profile db", field: "inbound_rules[0].src_net", reason: /not an IPv4 or IPv6 CIDR/ },
  { what: "!dst_net garbage", doc: inbound({ "!dst_net": "1.2.3.4/ 8" }), document: "Profile db", field: "inbound_rules[0].!dst_net", reason: /not an IPv4 or IPv6 CIDR/ },
  { what: "dst_net with a zone", doc: inbound({ dst_net: "fe80::1%eth0" }), document: "Profile db", field: "inbound_rules[0].dst_net", reason: /not an IPv4 or IPv6 CIDR/ },

  // --- mixed families (DESIGN §2.7)
  { what: "src_net v4 + dst_net v6", doc: inbound({ src_net: "10.0.0.0/8", dst_net: "2001:db8::/32" }), document: "Profile db", field: "inbound_rules[0]", reason: /mixes IPv4 and IPv6/ },
  { what: "ip_version 4 + v6 CIDR", doc: inbound({ ip_version: 4, dst_net: "2001:db8::/32" }), document: "Profile db", field: "inbound_rules[0]", reason: /mixes IPv4 and IPv6/ },
  { what: "ip_version 6 + v4 CIDR", doc: inbound({ ip_version: 6, "!src_net": "10.0.0.0/8" }), document: "Profile db", field: "inbound_rules[0]", reason: /mixes IPv4 and IPv6/ },
  { what: "!src_net v6 + src_net v4", doc: inbound({ src_net: "10.0.0.0/8", "!src_net": "2001:db8::/32" }), document: "Profile db", field: "inbound_rules[0]", reason: /mixes IPv4 and IPv6/ },
  { what: "icmp + v6 CIDR", doc: inbound({ protocol: "icmp", src_net: "2001:db8::/32" }), document: "Profile db", field: "inbound_rules[0]", reason: /mixes IPv4 and IPv6/ },
  { what: "icmpv6 + v4 CIDR", doc: profile({ outbound_rules: [{ protocol: "icmpv6", dst_net: "198.18.0.0/15" }] }), document: "Profile db", field: "outbound_rules[0]", reason: /mixes IPv4 and IPv6/ },
  // --- network and address pairs (DESIGN §2.10, §2.11)
  { what: "network with a space", doc: { ...EP, network: "net 1" }, document: EP_NAME, field: "network", reason: /./ },
  { what: "network not a string", doc: { ...EP, network: 7 }, document: EP_NAME, field: "network", reason: /string/ },
  { what: "address pair not a mapping", doc: { ...EP, address_pairs: ["10.0.0.1"] }, document: EP_NAME, field: "address_pairs[0]", reason: /mapping/ },
  { what: "address pair without ip_address", doc: { ...EP, address_pairs: [{ mac_address: "02:00:00:00:00:01" }] }, document: EP_NAME, field: "address_pairs[0].ip_address", reason: /required/ },
  { what: "address pair with an unknown key", doc: { ...EP, address_pairs: [{ ip_address: "10.0.0.1", mac: "02:00:00:00:00:01" }] }, document: EP_NAME, field: "address_pairs[0].mac", reason: /^unknown field$/ },
  { what: "address pair that is no address", doc: { ...EP, address_pairs: [{ ip_address: "10.0.0.300" }] }, document: EP_NAME, field: "address_pairs[0].ip_address", reason: /not an IP address or CIDR/ },
  { what: "address pair /0", doc: { ...EP, address_pairs: [{ ip_address: "0.0.0.0/0" }] }, document: EP_NAME, field: "address_pairs[0].ip_address", reason: /0\.0\.0\.0\/1 and 128\.0\.0\.0\/1/ },
  { what: "address pair with a bad MAC", doc: { ...EP, address_pairs: [{ ip_address: "10.0.0.1", mac_address: "00:00:5e:00:01" }] }, document: EP_NAME, field: "address_pairs[0].mac_address", reason: /MAC address/ },
  { what: "the same address pair twice", doc: { ...EP, address_pairs: [{ ip_address: "10.244.0.0/16" }, { ip_address: "10.244.0.0/16" }] }, document: EP_NAME, field: "address_pairs[1]", reason: /duplicate pair/ },
];

describe("validation: refused documents", () => {
  it.each(refused)("$what", ({ doc, document, field, reason }) => {
    const issues = issuesOf([doc]);
    expect(issues.length).toBeGreaterThan(0);
    const match = issues.find((i) => i.field === field && reason.test(i.reason));
    expect(match, `issues were ${JSON.stringify(issues)}`).toBeDefined();
    expect(match!.document).toBe(document);
  });
});

const accepted: { what: string; doc: Raw }[] = [
  { what: "id of 128 chars", doc: { kind: "Profile", id: "a".repeat(128) } },
  { what: "id with dots, dashes, underscores", doc: { kind: "Profile", id: "a.b_c-D9" } },
  { what: "interface name of 15 chars", doc: { ...EP, name: "tap0123456789ab" } },
  { what: "interface name with _ and -", doc: { ...EP, name: "veth_a-b" } },
  { what: "port 0 and 65535", doc: inbound({ protocol: "tcp", dst_ports: [0, 65535, "0:65535"] }) },
  { what: "ports with protocol by number 6", doc: inbound({ protocol: 6, dst_ports: [80] }) },
  { what: "ports with udp, sctp, udplite", doc: profile({ inbound_rules: ["udp", "sctp", "udplite", "17", "132", "136"].map((p) => ({ protocol: p, src_ports: [1] })) }) },
  { what: "512 ports", doc: inbound({ protocol: "tcp", dst_ports: Array.from({ length: 512 }, (_, i) => i + 1) }) },
  { what: "icmp_type 254", doc: inbound({ protocol: "icmp", icmp_type: 254 }) },
  { what: "icmp_type 0 code 255", doc: inbound({ protocol: "icmp", icmp_type: 0, icmp_code: 255 }) },
  { what: "icmpv6 with ip_version 6", doc: inbound({ protocol: "icmpv6", ip_version: 6, icmp_type: 128 }) },
  { what: "icmp with ip_version 4", doc: inbound({ protocol: "icmp", ip_version: 4 }) },
  { what: "protocol 255", doc: inbound({ protocol: 255 }) },
  { what: "same family on both nets", doc: inbound({ src_net: "2001:db8::/32", "!dst_net": "2001:db8:1::/48", ip_version: 6 }) },
  { what: "tags only, no family", doc: inbound({ src_tag: "x", "!dst_tag": "y" }) },
  { what: "mac upper case", doc: { ...EP, mac: "02:AB:00:00:00:01" } },
  { what: "empty label value", doc: { ...EP, labels: { a: "" } } },
  { what: "inactive endpoint without addresses", doc: { ...EP, state: "inactive" } },
  { what: "a network (a Neutron network id)", doc: { ...EP, network: "3f1c2a9e-5b7d-4c1e-9a2b-0d8e6f4a1b2c" } },
  { what: "address pairs: a CIDR, an address with its own MAC, IPv6", doc: { ...EP, address_pairs: [{ ip_address: "10.244.0.0/16" }, { ip_address: "10.0.0.100", mac_address: "00:00:5E:00:01:07" }, { ip_address: "2001:db8::/64" }] } },
  { what: "one address paired with two MACs", doc: { ...EP, address_pairs: [{ ip_address: "10.0.0.100", mac_address: "00:00:5e:00:01:07" }, { ip_address: "10.0.0.100" }] } },
];

describe("validation: network and address pairs round-trip", () => {
  it("canonicalises pairs (bare address = host route, host bits cleared, MAC lower case) and writes them back", async () => {
    const { toDocument } = await import("../../services/model/document.js");
    const [o] = parseDocuments([{ ...EP, network: "net-a", address_pairs: [{ ip_address: "10.244.7.9/16" }, { ip_address: "10.0.0.100", mac_address: "00:00:5E:00:01:07" }, { ip_address: "2001:db8::1" }] }]);
    expect(o!.kind === "Endpoint" && o!.endpoint.network).toBe("net-a");
    expect(o!.kind === "Endpoint" && o!.endpoint.addressPairs).toEqual([
      { net: "10.244.0.0/16" }, { net: "10.0.0.100/32", mac: "00:00:5e:00:01:07" }, { net: "2001:db8::1/128" },
    ]);
    const doc = toDocument(o!);
    expect(doc.network).toBe("net-a");
    expect(doc.address_pairs).toEqual([{ ip_address: "10.244.0.0/16" }, { ip_address: "10.0.0.100/32", mac_address: "00:00:5e:00:01:07" }, { ip_address: "2001:db8::1/128" }]);
    expect(parseDocuments([doc])).toEqual([o]);
  });

  it("documents without the fields mean what they always meant (no network, no pairs written)", async () => {
    const { toDocument } = await import("../../services/model/document.js");
    const [o] = parseDocuments([EP]);
    expect(o!.kind === "Endpoint" && "network" in o!.endpoint).toBe(false);
    expect(o!.kind === "Endpoint" && "addressPairs" in o!.endpoint).toBe(false);
    const doc = toDocument(o!);
    expect("network" in doc || "address_pairs" in doc).toBe(false);
  });

  it("crosses the wire unchanged", async () => {
    const { endpointFromPb, endpointToPb } = await import("../../services/contract/model-wire.js");
    const [o] = parseDocuments([{ ...EP, network: "net-a", address_pairs: [{ ip_address: "10.244.0.0/16" }, { ip_address: "10.0.0.100", mac_address: "00:00:5e:00:01:07" }] }, { ...EP, id: "port-2" }]);
    const e = o!.kind === "Endpoint" ? o!.endpoint : undefined;
    expect(endpointFromPb(endpointToPb(e!))).toEqual(e);
  });
});

describe("validation: accepted documents", () => {
  it.each(accepted)("$what", ({ doc }) => {
    expect(issuesOf([doc])).toEqual([]);
  });
});

describe("validation: batches", () => {
  it("formats each issue as 'document: field: reason'", () => {
    const issues = issuesOf([inbound({ protocol: "tcp", dst_ports: [80, 65536] })]);
    expect(issues.map(formatIssue)).toEqual(["Profile db: inbound_rules[0].dst_ports[1]: ports must be 0-65535"]);
    try {
      parseDocuments([inbound({ protocol: "tcp", dst_ports: [80, 65536] })]);
    } catch (e) {
      expect((e as Error).message).toBe("Profile db: inbound_rules[0].dst_ports[1]: ports must be 0-65535");
    }
  });

  it("names a document without identity by its 1-based position", () => {
    const issues = issuesOf([{ kind: "Profile", id: "a" }, { kind: "Profile", id: "b" }, { kind: "Widget" }]);
    expect(issues).toEqual([{ document: "document 3", field: "kind", reason: "'Widget' is not Profile or Endpoint" }]);
  });

  it("refuses the same profile twice in one batch", () => {
    const issues = issuesOf([{ kind: "Profile", id: "db" }, { kind: "Profile", id: "other" }, { kind: "Profile", id: "db", tags: ["x"] }]);
    expect(issues).toEqual([{ document: "Profile db", field: "", reason: "appears twice in one batch (also document 1)" }]);
  });

  it("refuses the same endpoint twice in one batch", () => {
    const issues = issuesOf([{ ...EP }, { ...EP, name: "tap2" }]);
    expect(issues).toEqual([{ document: EP_NAME, field: "", reason: "appears twice in one batch (also document 1)" }]);
  });

  it("a profile and an endpoint with the same id are not duplicates", () => {
    expect(issuesOf([{ kind: "Profile", id: "port-1" }, { ...EP }])).toEqual([]);
  });

  it("one bad document among good ones refuses the whole batch, listing every issue", () => {
    const raws = [
      { kind: "Profile", id: "good" },
      inbound({ protocol: "tcp", dst_ports: [65536] }),
      { ...EP, profile_ids: ["good"] },
      { ...EP, id: "port-2", name: "tap0123456789abcdef", mac: "zz" },
      { id: "no-kind" },
      { kind: "Profile", id: "good2" },
    ];
    let err: unknown;
    try {
      parseDocuments(raws);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const issues = (err as ValidationError).issues;
    expect(issues.map((i) => `${i.document}|${i.field}`).sort()).toEqual([
      "Endpoint hv1/openstack/vm-1/port-2|mac",
      "Endpoint hv1/openstack/vm-1/port-2|name",
      "Profile db|inbound_rules[0].dst_ports[0]",
      "document 5|kind",
    ]);
    expect((err as Error).message.split("; ")).toHaveLength(4);
  });

  it("reports every issue of one document, not just the first", () => {
    const issues = issuesOf([profile({ tags: ["bad tag"], inbound_rules: [{ action: "nope" }], outbound_rules: [{ protocol: "tcp", dst_ports: [] }] })]);
    expect(issues.map((i) => i.field).sort()).toEqual(["inbound_rules[0].action", "outbound_rules[0].dst_ports", "tags[0]"]);
  });

  it("escapes control characters in a hostile identifier", () => {
    const issues = issuesOf([{ kind: "Profile", id: "a\nb\u0007" }]);
    expect(issues[0]!.document).toBe("Profile a\\nb\\u0007");
    expect(issues[0]!.document).not.toMatch(/[\u0000-\u001f]/);
  });
});

// Protocol names are not object keys; extension headers; port-list products.
function refuseRule(rule: Record<string, unknown>): string {
  try {
    parseDocuments([{ kind: "Profile", id: "x", inbound_rules: [rule] }]);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as Error).message;
  }
  throw new Error("accepted");
}

describe("refusals that need a second look", () => {
  it("inherited object keys are not protocol names", () => {
    expect(refuseRule({ protocol: "constructor" })).toContain("inbound_rules[0].protocol");
    expect(refuseRule({ protocol: "__proto__" })).toContain("inbound_rules[0].protocol");
    expect(refuseRule({ "!protocol": "toString" })).toContain("inbound_rules[0].!protocol");
  });

  it("IPv6 extension headers are refused as protocols where the rule reaches IPv6", () => {
    expect(refuseRule({ protocol: 44 })).toContain("IPv6 extension header");
    expect(refuseRule({ protocol: 43, ip_version: 6 })).toContain("IPv6 extension header");
    expect(() => parseDocuments([{ kind: "Profile", id: "x", inbound_rules: [{ protocol: 43, ip_version: 4 }] }])).not.toThrow();
  });

  it("two long port lists whose product would explode are refused; one long list is fine", () => {
    const many = Array.from({ length: 300 }, (_, i) => i + 1); // 20 x 20 = 400 lines
    expect(refuseRule({ protocol: "tcp", src_ports: many, dst_ports: many })).toContain("split this rule");
    expect(() => parseDocuments([{ kind: "Profile", id: "x", inbound_rules: [{ protocol: "tcp", dst_ports: Array.from({ length: 512 }, (_, i) => `${2 * i + 1}:${2 * i + 2}`) }] }])).not.toThrow();
  });
});
