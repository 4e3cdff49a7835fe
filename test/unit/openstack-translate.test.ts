// Neutron -> Palisade translation (services/openstack/translate.ts): the
// mapping decided in its design notes, pinned rule by rule, plus the Neutron
// fixtures (test/fixtures/openstack) end to end, determinism, and the shape
// checks of the API files.
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDocuments, ruleToDocument, toDocument, validateObject } from "../../services/model/document.js";
import type { Endpoint, ModelObject, Profile } from "../../services/model/types.js";
import {
  NO_PORT_SECURITY_PROFILE, ORCHESTRATOR, OWNER_LABEL, TranslateError, parseAddressGroupsFile, parsePortsFile,
  parseSecurityGroupsFile, translate,
  type NeutronAddressGroup, type NeutronPort, type NeutronSecurityGroup, type NeutronSecurityGroupRule, type TranslateInput,
  type TranslateIssue, type TranslateResult,
} from "../../services/openstack/translate.js";
import { mulberry32, shuffle } from "../support/prng.js";

const fixture = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`../fixtures/openstack/${name}`, import.meta.url), "utf8"));

/** The network of every port in test/fixtures/openstack/ports.json. */
const FIXTURE_NET = "0f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f";
const LABELS = { [OWNER_LABEL]: "openstack" };

// Fixture ids (test/fixtures/openstack/*.json).
const DEFAULT = "a3c4e6f8-1b2d-4e5f-8a9b-0c1d2e3f4a5b";
const WEB = "5e7d9c1b-3a2f-4d6e-9b8a-7c6d5e4f3a2b";
const ADMIN = "c9b8a7d6-e5f4-4321-9abc-def012345678";
const ADDRESS_GROUP = "e8d7c6b5-a493-4827-9160-5f4e3d2c1b0a";

function issuesOf(f: () => unknown): TranslateIssue[] {
  try {
    f();
  } catch (e) {
    if (e instanceof TranslateError) return e.issues;
    throw e;
  }
  throw new Error("expected a TranslateError");
}

function expectAllValid(objects: ModelObject[]): void {
  for (const o of objects) expect(validateObject(o)).toEqual([]);
  // Canonical form: what a reconciler stores reads back identical.
  expect(parseDocuments(objects.map(toDocument))).toEqual(objects);
}

const profiles = (r: TranslateResult): Profile[] => r.objects.flatMap((o) => (o.kind === "Profile" ? [o.profile] : []));
const endpoints = (r: TranslateResult): Endpoint[] => r.objects.flatMap((o) => (o.kind === "Endpoint" ? [o.endpoint] : []));

// ---------------------------------------------------------------------------
// The fixtures end to end

describe("translate: the Neutron fixtures", () => {
  const input = (): TranslateInput => ({
    securityGroups: parseSecurityGroupsFile(fixture("security-groups.json")),
    ports: parsePortsFile(fixture("ports.json")),
  });

  it("gives the expected profiles and endpoints, sorted (profiles by id, then endpoints by key)", () => {
    const r = translate(input());
    expect(r.objects.map(toDocument)).toEqual([
      {
        kind: "Profile", id: WEB, tags: [WEB], labels: LABELS,
        inbound_rules: [ // by Neutron rule id
          { action: "allow", ip_version: 6, protocol: "tcp", dst_ports: [443] }, //    16a7b8c9 (::/0 dropped)
          { action: "allow", ip_version: 6, protocol: "icmpv6", icmp_type: 128 }, //   38c9d0e1 ipv6-icmp echo
          { action: "allow", ip_version: 6, protocol: "tcp", dst_ports: [80] }, //     4d5e6f7a
          { action: "allow", ip_version: 4, protocol: "tcp", dst_ports: [80] }, //     9c0d1e2f (0.0.0.0/0 dropped)
          { action: "allow", ip_version: 4, protocol: "icmp", icmp_type: 8 }, //       b7c8d9e0 echo
          { action: "allow", ip_version: 4, protocol: "tcp", dst_ports: [443] }, //    e5f6a7b8
        ],
        outbound_rules: [{ action: "allow", ip_version: 4 }, { action: "allow", ip_version: 6 }],
      },
      {
        kind: "Profile", id: DEFAULT, tags: [DEFAULT], labels: LABELS,
        // Neutron's default-group rules, 1:1: ingress from its own members, egress anywhere.
        inbound_rules: [{ action: "allow", ip_version: 4, src_tag: DEFAULT }, { action: "allow", ip_version: 6, src_tag: DEFAULT }],
        outbound_rules: [{ action: "allow", ip_version: 6 }, { action: "allow", ip_version: 4 }],
      },
      {
        kind: "Profile", id: NO_PORT_SECURITY_PROFILE, tags: [], labels: LABELS,
        inbound_rules: [{ action: "allow", ip_version: 4 }, { action: "allow", ip_version: 6 }],
        outbound_rules: [{ action: "allow", ip_version: 4 }, { action: "allow", ip_version: 6 }],
      },
      {
        kind: "Endpoint", network: FIXTURE_NET, host: "hv1", orchestrator: "openstack", workload: "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
        id: "b2c4d6e8-0a1c-4e3f-9b5d-7f9a1c3e5b7d", name: "tapb2c4d6e8-0a", state: "active", mac: "fa:16:3e:58:a7:0b",
        // fixed IPs; the allowed pairs, the /24 one included, as address_pairs.
        ipv4_nets: ["198.18.0.15/32"], ipv6_nets: ["2001:db8:0:1::15/128"],
        address_pairs: [{ ip_address: "198.18.0.100/32" }, { ip_address: "198.18.2.0/24" }, { ip_address: "2001:db8:0:1::100/128" }],
        profile_ids: [WEB], labels: LABELS,
      },
      {
        kind: "Endpoint", network: FIXTURE_NET, host: "hv1", orchestrator: "openstack", workload: "9d3b2f7a-1c4e-4a8b-b6d5-3e2f1a0c9b8d",
        id: "4f2a9c1e-7b3d-4e8a-9f6c-2d1b0a9e8c7d", name: "tap4f2a9c1e-7b", state: "active", mac: "fa:16:3e:4a:91:c2",
        ipv4_nets: ["198.18.0.11/32"], ipv6_nets: ["2001:db8:0:1::11/128"], profile_ids: [WEB, DEFAULT] /* sorted */, labels: LABELS,
      },
      {
        kind: "Endpoint", network: FIXTURE_NET, host: "hv2", orchestrator: "openstack", workload: "2c7e9a4b-6d1f-4b3a-8c5e-9f0a1b2c3d4e",
        id: "8b1e6d4c-2a7f-4c3b-9e8d-5f4a3b2c1d0e", name: "tap8b1e6d4c-2a", state: "active", mac: "fa:16:3e:7c:05:d8",
        ipv4_nets: ["198.18.0.12/32"], ipv6_nets: ["2001:db8:0:1::12/128"], profile_ids: [DEFAULT], labels: LABELS,
      },
      {
        // port_security_enabled false: the allow-all profile, no MAC.
        kind: "Endpoint", network: FIXTURE_NET, host: "hv2", orchestrator: "openstack", workload: "c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f",
        id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", name: "tap9a8b7c6d-5e", state: "active",
        ipv4_nets: ["198.18.0.14/32"], ipv6_nets: ["2001:db8:0:1::14/128"], profile_ids: [NO_PORT_SECURITY_PROFILE], labels: LABELS,
      },
    ]);
  });

  it("skips the DHCP, router and unbound ports, with reasons, sorted by port id", () => {
    const r = translate(input());
    expect(r.skipped.map((s) => s.port)).toEqual([
      "1c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f", // network:dhcp
      "3e5f7a9b-1c2d-4e6f-8a0b-2c4d6e8f0a1b", // compute:nova, unbound
      "6a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", // network:router_interface
    ]);
    expect(r.skipped[0]!.reason).toMatch(/network:dhcp.*no security groups to network-owned ports/);
    expect(r.skipped[1]!.reason).toMatch(/not bound to a host/);
    expect(r.skipped[2]!.reason).toMatch(/network:router_interface.*no security groups/);
  });

  it("warns about the port without port security, nothing else (the wide allowed address pair is kept)", () => {
    const r = translate(input());
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/^port 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d: port security is disabled.*openstack-no-port-security/);
  });

  it("every object is valid, in canonical form, and carries the owner label", () => {
    const r = translate(input());
    expect(r.objects).toHaveLength(7);
    expectAllValid(r.objects);
    for (const o of r.objects) expect(o.kind === "Profile" ? o.profile.labels : o.endpoint.labels).toEqual(LABELS);
    for (const e of endpoints(r)) expect(e.orchestrator).toBe(ORCHESTRATOR);
  });

  it("the address-group fixture: refused without --address-groups, expanded with it", () => {
    const groups = parseSecurityGroupsFile(fixture("security-groups-address-group.json"));
    const issues = issuesOf(() => translate({ securityGroups: groups, ports: [] }));
    expect(issues).toHaveLength(2); // the IPv4 and the IPv6 SSH rule
    for (const i of issues) {
      expect(i.object).toMatch(new RegExp(`^security group ${ADMIN} rule `));
      expect(i.field).toBe("remote_address_group_id");
      expect(i.reason).toMatch(/--address-groups FILE/);
    }
    const r = translate({ securityGroups: groups, ports: [], addressGroups: parseAddressGroupsFile(fixture("address-groups.json")) });
    expect(r.objects.map(toDocument)).toEqual([{
      kind: "Profile", id: ADMIN, tags: [ADMIN], labels: LABELS,
      inbound_rules: [
        { action: "allow", ip_version: 4, protocol: "tcp", src_net: "198.18.10.0/24", dst_ports: [22] },
        { action: "allow", ip_version: 4, protocol: "tcp", src_net: "198.19.0.5/32", dst_ports: [22] },
        { action: "allow", ip_version: 6, protocol: "tcp", src_net: "2001:db8:ad::/48", dst_ports: [22] },
      ],
      outbound_rules: [{ action: "allow", ip_version: 4 }, { action: "allow", ip_version: 6 }],
    }]);
    expect(r.warnings).toEqual([]);
    expectAllValid(r.objects);
  });
});

// ---------------------------------------------------------------------------
// Rules, one by one

const G = "11111111-2222-4333-8444-555555555555";
const OTHER = "66666666-7777-4888-9999-000000000000";
const ADDRESS_GROUPS: NeutronAddressGroup[] = [
  // 198.18.4.9/24 is 198.18.4.0/24 again once canonical: deduplicated.
  { id: "ag-mixed", name: "mixed", addresses: ["198.18.4.0/24", "2001:db8:4::/64", "198.18.3.7/32", "198.18.4.9/24"] },
  { id: "ag-v4only", addresses: ["198.18.5.0/24"] },
  { id: "ag-any", addresses: ["0.0.0.0/0", "198.18.6.1/32"] },
];

function nrule(p: Partial<NeutronSecurityGroupRule>): NeutronSecurityGroupRule {
  return {
    id: "0f000000-0000-4000-8000-000000000001", security_group_id: G, direction: "ingress", ethertype: "IPv4",
    protocol: null, port_range_min: null, port_range_max: null, remote_ip_prefix: null, remote_group_id: null,
    remote_address_group_id: null, ...p,
  };
}

function groupsWith(rules: NeutronSecurityGroupRule[]): NeutronSecurityGroup[] {
  return [{ id: G, name: "g", security_group_rules: rules }, { id: OTHER, name: "other", security_group_rules: [] }];
}

/** The rule's translation, in document form, from the direction it belongs to. */
function translateOne(r: NeutronSecurityGroupRule, addressGroups: NeutronAddressGroup[] | undefined = ADDRESS_GROUPS) {
  const res = translate({ securityGroups: groupsWith([r]), ports: [], addressGroups });
  const p = profiles(res).find((x) => x.id === G)!;
  const [mine, theirs] = r.direction === "ingress" ? [p.inboundRules, p.outboundRules] : [p.outboundRules, p.inboundRules];
  expect(theirs).toEqual([]);
  expectAllValid(res.objects);
  return { docs: mine.map(ruleToDocument), warnings: res.warnings };
}

const v4 = (m: Record<string, unknown> = {}) => ({ action: "allow", ip_version: 4, ...m });
const v6 = (m: Record<string, unknown> = {}) => ({ action: "allow", ip_version: 6, ...m });
const in6 = { ethertype: "IPv6" as const };
const egress = { direction: "egress" as const };

describe("translate: rules that translate", () => {
  it.each<[string, Partial<NeutronSecurityGroupRule>, Record<string, unknown>[]]>([
    // Neutron's defaults are ordinary rules: 1:1.
    ["egress IPv4 allow-all", { ...egress }, [v4()]],
    ["egress IPv6 allow-all", { ...egress, ...in6 }, [v6()]],
    ["ingress from own group (default group)", { remote_group_id: G }, [v4({ src_tag: G })]],
    ["ingress IPv6 from another group", { ...in6, remote_group_id: OTHER }, [v6({ src_tag: OTHER })]],
    ["egress to a group -> dst_tag", { ...egress, remote_group_id: OTHER, protocol: "tcp", port_range_min: 5432, port_range_max: 5432 },
      [v4({ protocol: "tcp", dst_tag: OTHER, dst_ports: [5432] })]],
    // Protocol "any" spellings.
    ["protocol null", { protocol: null }, [v4()]],
    ["protocol 'any'", { protocol: "any" }, [v4()]],
    ["protocol 'ANY' (case)", { protocol: "ANY" }, [v4()]],
    ["protocol '0' (Neutron: all protocols)", { protocol: "0" }, [v4()]],
    ["protocol 0 as a number", { protocol: 0 }, [v4()]],
    ["protocol 'ip' (Neutron's name for 0)", { protocol: "ip" }, [v4()]],
    ["protocol '0' IPv6: any, not hop-by-hop", { ...in6, protocol: "0" }, [v6()]],
    ["protocol 'any' with the whole port range", { protocol: "any", port_range_min: 0, port_range_max: 65535 }, [v4()]],
    // Names and numbers.
    ["tcp", { protocol: "tcp" }, [v4({ protocol: "tcp" })]],
    ["'TCP' (case)", { protocol: "TCP" }, [v4({ protocol: "tcp" })]],
    ["'6' -> tcp", { protocol: "6" }, [v4({ protocol: "tcp" })]],
    ["6 (number) -> tcp", { protocol: 6 }, [v4({ protocol: "tcp" })]],
    ["'17' -> udp", { protocol: "17" }, [v4({ protocol: "udp" })]],
    ["sctp", { protocol: "sctp" }, [v4({ protocol: "sctp" })]],
    ["'132' -> sctp", { protocol: "132" }, [v4({ protocol: "sctp" })]],
    ["udplite", { protocol: "udplite" }, [v4({ protocol: "udplite" })]],
    ["gre -> 47", { protocol: "gre" }, [v4({ protocol: 47 })]],
    ["esp -> 50", { protocol: "esp" }, [v4({ protocol: 50 })]],
    ["ah IPv4 -> 51", { protocol: "ah" }, [v4({ protocol: 51 })]],
    ["dccp -> 33", { protocol: "dccp" }, [v4({ protocol: 33 })]],
    ["egp -> 8", { protocol: "egp" }, [v4({ protocol: 8 })]],
    ["igmp -> 2", { protocol: "igmp" }, [v4({ protocol: 2 })]],
    ["ipip -> 4", { protocol: "ipip" }, [v4({ protocol: 4 })]],
    ["ospf -> 89", { protocol: "ospf" }, [v4({ protocol: 89 })]],
    ["pgm -> 113", { protocol: "pgm" }, [v4({ protocol: 113 })]],
    ["rsvp -> 46", { protocol: "rsvp" }, [v4({ protocol: 46 })]],
    ["vrrp -> 112", { protocol: "vrrp" }, [v4({ protocol: 112 })]],
    ["ipv6-encap IPv6 -> 41", { ...in6, protocol: "ipv6-encap" }, [v6({ protocol: 41 })]],
    ["ipv6-nonxt IPv6 -> 59 (matchable)", { ...in6, protocol: "ipv6-nonxt" }, [v6({ protocol: 59 })]],
    ["ipv6-frag IPv4 -> 44 (not an extension header in IPv4)", { protocol: "ipv6-frag" }, [v4({ protocol: 44 })]],
    ["'250'", { protocol: "250" }, [v4({ protocol: 250 })]],
    ["255 (number)", { protocol: 255 }, [v4({ protocol: 255 })]],
    // ICMP and ICMPv6.
    ["icmp", { protocol: "icmp" }, [v4({ protocol: "icmp" })]],
    ["'1' -> icmp", { protocol: "1" }, [v4({ protocol: "icmp" })]],
    ["icmp IPv6 -> icmpv6", { ...in6, protocol: "icmp" }, [v6({ protocol: "icmpv6" })]],
    ["icmpv6 IPv6", { ...in6, protocol: "icmpv6" }, [v6({ protocol: "icmpv6" })]],
    ["ipv6-icmp IPv6", { ...in6, protocol: "ipv6-icmp" }, [v6({ protocol: "icmpv6" })]],
    ["'58' IPv6", { ...in6, protocol: "58" }, [v6({ protocol: "icmpv6" })]],
    ["'1' IPv6 -> icmpv6 (Neutron rewrites it)", { ...in6, protocol: "1" }, [v6({ protocol: "icmpv6" })]],
    ["icmp type only (echo)", { protocol: "icmp", port_range_min: 8 }, [v4({ protocol: "icmp", icmp_type: 8 })]],
    ["icmp type and code", { protocol: "icmp", port_range_min: 3, port_range_max: 4 }, [v4({ protocol: "icmp", icmp_type: 3, icmp_code: 4 })]],
    ["icmp type 0 code 0", { protocol: "icmp", port_range_min: 0, port_range_max: 0 }, [v4({ protocol: "icmp", icmp_type: 0, icmp_code: 0 })]],
    ["icmp type 254, code 255 (the model's limits)", { protocol: "icmp", port_range_min: 254, port_range_max: 255 },
      [v4({ protocol: "icmp", icmp_type: 254, icmp_code: 255 })]],
    ["ipv6-icmp neighbour solicitation", { ...in6, protocol: "ipv6-icmp", port_range_min: 135, port_range_max: 0 },
      [v6({ protocol: "icmpv6", icmp_type: 135, icmp_code: 0 })]],
    // Ports.
    ["tcp single port (min == max)", { protocol: "tcp", port_range_min: 22, port_range_max: 22 }, [v4({ protocol: "tcp", dst_ports: [22] })]],
    ["tcp only min -> single port", { protocol: "tcp", port_range_min: 22 }, [v4({ protocol: "tcp", dst_ports: [22] })]],
    ["tcp range", { protocol: "tcp", port_range_min: 8000, port_range_max: 8080 }, [v4({ protocol: "tcp", dst_ports: ["8000:8080"] })]],
    ["udp range", { protocol: "udp", port_range_min: 60000, port_range_max: 61000 }, [v4({ protocol: "udp", dst_ports: ["60000:61000"] })]],
    ["sctp port", { protocol: "sctp", port_range_min: 3868, port_range_max: 3868 }, [v4({ protocol: "sctp", dst_ports: [3868] })]],
    ["udplite range", { protocol: "udplite", port_range_min: 5000, port_range_max: 5001 }, [v4({ protocol: "udplite", dst_ports: ["5000:5001"] })]],
    ["egress tcp port: still the destination port", { ...egress, protocol: "tcp", port_range_min: 443, port_range_max: 443 },
      [v4({ protocol: "tcp", dst_ports: [443] })]],
    ["tcp 1-65535 -> no port criterion", { protocol: "tcp", port_range_min: 1, port_range_max: 65535 }, [v4({ protocol: "tcp" })]],
    ["tcp 0-65535 -> no port criterion", { protocol: "tcp", port_range_min: 0, port_range_max: 65535 }, [v4({ protocol: "tcp" })]],
    ["udp IPv6 1-65535 -> no port criterion", { ...in6, protocol: "udp", port_range_min: 1, port_range_max: 65535 }, [v6({ protocol: "udp" })]],
    ["dccp whole range -> no port criterion", { protocol: "dccp", port_range_min: 1, port_range_max: 65535 }, [v4({ protocol: 33 })]],
    // remote_ip_prefix.
    ["ingress prefix -> src_net", { remote_ip_prefix: "198.18.0.0/24" }, [v4({ src_net: "198.18.0.0/24" })]],
    ["egress prefix -> dst_net", { ...egress, remote_ip_prefix: "198.18.0.0/24" }, [v4({ dst_net: "198.18.0.0/24" })]],
    ["bare IPv4 address -> /32", { remote_ip_prefix: "198.18.0.5" }, [v4({ src_net: "198.18.0.5/32" })]],
    ["bare IPv6 address -> /128", { ...in6, remote_ip_prefix: "2001:db8::5" }, [v6({ src_net: "2001:db8::5/128" })]],
    ["host bits cleared", { remote_ip_prefix: "198.18.0.77/24" }, [v4({ src_net: "198.18.0.0/24" })]],
    ["IPv6 canonicalised", { ...in6, ...egress, remote_ip_prefix: "2001:DB8:0:0:0::/64" }, [v6({ dst_net: "2001:db8::/64" })]],
    ["0.0.0.0/0 -> no criterion", { protocol: "tcp", port_range_min: 80, port_range_max: 80, remote_ip_prefix: "0.0.0.0/0" },
      [v4({ protocol: "tcp", dst_ports: [80] })]],
    ["::/0 -> no criterion", { ...in6, ...egress, remote_ip_prefix: "::/0" }, [v6()]],
    ["everything at once", { protocol: "udp", port_range_min: 53, port_range_max: 53, remote_ip_prefix: "198.19.255.0/24" },
      [v4({ protocol: "udp", src_net: "198.19.255.0/24", dst_ports: [53] })]],
    // remote_address_group_id.
    ["address group: one rule per address of the family, sorted, deduplicated",
      { protocol: "tcp", port_range_min: 22, port_range_max: 22, remote_address_group_id: "ag-mixed" },
      [v4({ protocol: "tcp", src_net: "198.18.3.7/32", dst_ports: [22] }), v4({ protocol: "tcp", src_net: "198.18.4.0/24", dst_ports: [22] })]],
    ["address group, IPv6 egress", { ...in6, ...egress, remote_address_group_id: "ag-mixed" }, [v6({ dst_net: "2001:db8:4::/64" })]],
    ["address group with 0.0.0.0/0 -> a rule without a net", { remote_address_group_id: "ag-any" },
      [v4(), v4({ src_net: "198.18.6.1/32" })]],
    ["address group with no address of the family -> no rule", { ...in6, remote_address_group_id: "ag-v4only" }, []],
  ])("%s", (_name, partial, expected) => {
    expect(translateOne(nrule(partial)).docs).toEqual(expected);
  });

  it("warns where the translation is not exact", () => {
    expect(translateOne(nrule({ ...in6, protocol: "hopopt" }))).toEqual({
      docs: [v6()],
      warnings: [expect.stringMatching(/protocol 'hopopt' is protocol 0, which Neutron treats as any protocol/)],
    });
    expect(translateOne(nrule({ ...in6, remote_address_group_id: "ag-v4only" })).warnings)
      .toEqual([expect.stringMatching(/address group ag-v4only has no IPv6 address; the rule matches nothing/)]);
    const missing = "77777777-0000-4000-8000-000000000000";
    expect(translateOne(nrule({ remote_group_id: missing }))).toEqual({
      docs: [v4({ src_tag: missing })],
      warnings: [expect.stringMatching(new RegExp(`remote group ${missing} is not in the input; the rule matches no one`))],
    });
    // Exact translations warn about nothing.
    expect(translateOne(nrule({ protocol: "tcp", port_range_min: 1, port_range_max: 65535 })).warnings).toEqual([]);
  });

  it("a stateless group is translated as stateful, with a warning naming it", () => {
    const r = translate({
      securityGroups: [{ id: G, name: "udp-stateless", stateful: false, security_group_rules: [nrule({ protocol: "udp", port_range_min: 53 })] }],
      ports: [],
    });
    expect(profiles(r)[0]!.inboundRules.map(ruleToDocument)).toEqual([v4({ protocol: "udp", dst_ports: [53] })]);
    expect(r.warnings).toEqual([expect.stringMatching(new RegExp(`^security group ${G} \\(udp-stateless\\) is stateless.*always stateful`))]);
  });

  it("a group's rules are sorted by Neutron rule id, split by direction, nothing implicit added", () => {
    const ids = ["c0000000-0000-4000-8000-000000000000", "a0000000-0000-4000-8000-000000000000", "b0000000-0000-4000-8000-000000000000"];
    const r = translate({
      securityGroups: [{ id: G, security_group_rules: [
        nrule({ id: ids[0], protocol: "tcp", port_range_min: 3 }),
        nrule({ id: ids[1], protocol: "tcp", port_range_min: 1 }),
        nrule({ id: ids[2], protocol: "tcp", port_range_min: 2 }),
      ] }],
      ports: [],
    });
    const p = profiles(r)[0]!;
    expect(p.inboundRules.map((x) => x.match.dstPorts)).toEqual([[{ first: 1, last: 1 }], [{ first: 2, last: 2 }], [{ first: 3, last: 3 }]]);
    // No egress rules in Neutron -> none in Palisade (Neutron's behaviour when an operator deletes them).
    expect(p.outboundRules).toEqual([]);
    expect(p.tags).toEqual([G]);
  });
});

describe("translate: rules that are refused", () => {
  it.each<[string, Partial<NeutronSecurityGroupRule>, string, RegExp]>([
    ["icmpv6 with IPv4", { protocol: "icmpv6" }, "protocol", /'icmpv6' is ICMPv6, which does not exist for ethertype IPv4/],
    ["ipv6-icmp with IPv4", { protocol: "ipv6-icmp" }, "protocol", /ICMPv6.*IPv4/],
    ["58 with IPv4", { protocol: "58" }, "protocol", /ICMPv6.*IPv4/],
    ["ipv6-frag with IPv6", { ...in6, protocol: "ipv6-frag" }, "protocol", /\(44, ipv6-frag\) is an IPv6 extension header/],
    ["ipv6-route with IPv6", { ...in6, protocol: "ipv6-route" }, "protocol", /\(43, ipv6-route\) is an IPv6 extension header/],
    ["ipv6-opts with IPv6", { ...in6, protocol: "ipv6-opts" }, "protocol", /\(60, ipv6-opts\) is an IPv6 extension header/],
    ["ah with IPv6", { ...in6, protocol: "ah" }, "protocol", /\(51, ah\) is an IPv6 extension header/],
    ["44 with IPv6", { ...in6, protocol: 44 }, "protocol", /extension header.*delete the rule or change its protocol/],
    ["unknown protocol name", { protocol: "http" }, "protocol", /'http' is not a protocol Neutron accepts/],
    ["protocol 256", { protocol: "256" }, "protocol", /'256' is not a protocol Neutron accepts/],
    ["protocol -1 (number)", { protocol: -1 }, "protocol", /-1 is not a protocol number 0-255/],
    ["port max without min", { protocol: "tcp", port_range_max: 80 }, "port_range_max", /port 80 is given without port_range_min/],
    ["port min > max", { protocol: "udp", port_range_min: 90, port_range_max: 80 }, "port_range_min", /90-80 has port_range_min > port_range_max/],
    ["port above 65535", { protocol: "tcp", port_range_min: 70000, port_range_max: 70000 }, "port_range_min", /70000 is outside 0-65535/],
    ["negative port", { protocol: "tcp", port_range_min: -1, port_range_max: 5 }, "port_range_min", /-1 is outside 0-65535/],
    ["ports with gre", { protocol: "gre", port_range_min: 10, port_range_max: 20 }, "port_range_min", /ports 10-20 cannot be matched for protocol 'gre'/],
    ["ports with dccp", { protocol: "dccp", port_range_min: 5000, port_range_max: 5000 }, "port_range_min", /cannot be matched for dccp.*only for tcp, udp, sctp and udplite/],
    ["ports without a protocol", { port_range_min: 80, port_range_max: 80 }, "port_range_min", /ports 80-80 are given without a protocol/],
    ["ports with 'any'", { protocol: "any", port_range_min: 80, port_range_max: 81 }, "port_range_min", /without a protocol/],
    ["ICMP code without type", { protocol: "icmp", port_range_max: 0 }, "port_range_max", /ICMP code 0 is given without an ICMP type/],
    ["ICMP type 255", { protocol: "icmp", port_range_min: 255 }, "port_range_min", /ICMP type 255 is outside 0-254/],
    ["ICMPv6 code 256", { ...in6, protocol: "ipv6-icmp", port_range_min: 1, port_range_max: 256 }, "port_range_max", /ICMP code 256 is outside 0-255/],
    ["IPv6 prefix on an IPv4 rule", { remote_ip_prefix: "2001:db8::/32" }, "remote_ip_prefix", /'2001:db8::\/32' is an IPv6 prefix but the rule's ethertype is IPv4/],
    ["IPv4 prefix on an IPv6 rule", { ...in6, remote_ip_prefix: "198.18.0.0/15" }, "remote_ip_prefix", /IPv4 prefix but the rule's ethertype is IPv6/],
    ["not a prefix", { remote_ip_prefix: "198.18.0.300/24" }, "remote_ip_prefix", /'198\.18\.0\.300\/24' is not an IP address or CIDR/],
    ["prefix and group", { remote_ip_prefix: "198.18.0.0/24", remote_group_id: OTHER }, "remote_group_id",
      /only one of remote_ip_prefix, remote_group_id and remote_address_group_id may be set \(got remote_ip_prefix and remote_group_id\)/],
    ["group and address group", { remote_group_id: OTHER, remote_address_group_id: "ag-mixed" }, "remote_address_group_id", /only one of/],
    ["address group not found", { remote_address_group_id: "ag-nope" }, "remote_address_group_id",
      /address group ag-nope is not in the address groups given; pass --address-groups FILE/],
    ["remote group id that is not a Palisade id", { remote_group_id: "no spaces" }, "remote_group_id", /may contain only letters, digits.*used as a Palisade tag/],
    ["unknown ethertype", { ethertype: "IPv5" as "IPv4" }, "ethertype", /must be 'IPv4' or 'IPv6'/],
  ])("%s", (_name, partial, field, reason) => {
    const rule = nrule(partial);
    const issues = issuesOf(() => translate({ securityGroups: groupsWith([rule]), ports: [], addressGroups: ADDRESS_GROUPS }));
    expect(issues).toEqual([{ object: `security group ${G} rule ${rule.id}`, field, reason: expect.stringMatching(reason) }]);
  });

  it("an address-group rule without any address groups given tells the operator what to pass", () => {
    const rule = nrule({ remote_address_group_id: "ag-mixed" });
    const issues = issuesOf(() => translate({ securityGroups: groupsWith([rule]), ports: [] }));
    expect(issues).toEqual([{
      object: `security group ${G} rule ${rule.id}`, field: "remote_address_group_id",
      reason: expect.stringMatching(/no address groups were given; pass --address-groups FILE/),
    }]);
  });

  it("lists every problem of the whole input at once, and its message names each", () => {
    const bad1 = nrule({ id: "b1000000-0000-4000-8000-000000000000", protocol: "icmpv6" });
    const bad2 = nrule({ id: "b2000000-0000-4000-8000-000000000000", protocol: "tcp", port_range_max: 1, remote_ip_prefix: "2001:db8::/32" });
    const good = nrule({ id: "b3000000-0000-4000-8000-000000000000", protocol: "tcp" });
    let err: unknown;
    try {
      translate({
        securityGroups: groupsWith([good, bad2, bad1]),
        ports: [port({ id: "p-bad-host", "binding:host_id": "hv 1" }), port({ id: "p-bad-ip", fixed_ips: [{ ip_address: "198.18.0.256" }] })],
        addressGroups: [{ id: "ag", addresses: ["nope"] }],
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TranslateError);
    const issues = (err as TranslateError).issues;
    expect(issues.map((i) => `${i.object}|${i.field}`)).toEqual([
      "address group ag|addresses[0]",
      `security group ${G} rule b1000000-0000-4000-8000-000000000000|protocol`,
      `security group ${G} rule b2000000-0000-4000-8000-000000000000|port_range_max`,
      `security group ${G} rule b2000000-0000-4000-8000-000000000000|remote_ip_prefix`,
      "port p-bad-host|binding:host_id",
      "port p-bad-ip|fixed_ips[0].ip_address",
    ]);
    expect((err as TranslateError).message).toMatch(/^Neutron input cannot be translated \(6 problems\):\n/);
    expect((err as TranslateError).message).toContain("port p-bad-ip: fixed_ips[0].ip_address: '198.18.0.256' is not an IP address");
  });

  it("duplicate group or port ids, and a group that takes the reserved profile id, are refused", () => {
    expect(issuesOf(() => translate({ securityGroups: [...groupsWith([]), { id: G, security_group_rules: [] }], ports: [] })))
      .toEqual([{ object: `security group ${G}`, field: "id", reason: "appears twice in the security groups given" }]);
    expect(issuesOf(() => translate({ securityGroups: [], ports: [port({ id: "p1" }), port({ id: "p1" })] })))
      .toEqual([{ object: "port p1", field: "id", reason: "appears twice in the ports given" }]);
    expect(issuesOf(() => translate({ securityGroups: [{ id: NO_PORT_SECURITY_PROFILE, security_group_rules: [] }], ports: [] })))
      .toEqual([expect.objectContaining({ field: "id", reason: expect.stringMatching(/reserves for ports without port security/) })]);
    expect(issuesOf(() => translate({ securityGroups: [{ id: "web group", security_group_rules: [] }], ports: [] })))
      .toEqual([{ object: "security group web group", field: "id", reason: expect.stringMatching(/may contain only.*profile id and tag/) }]);
  });
});

// ---------------------------------------------------------------------------
// Ports

function port(p: Partial<NeutronPort>): NeutronPort {
  return {
    id: "0c7e0000-1111-4222-8333-444455556666", network_id: "net-1", mac_address: "fa:16:3e:00:00:01", admin_state_up: true, status: "ACTIVE",
    device_owner: "compute:nova", device_id: "d0000000-0000-4000-8000-000000000001", "binding:host_id": "hv1",
    fixed_ips: [{ ip_address: "198.18.0.10" }], allowed_address_pairs: [], port_security_enabled: true, security_groups: [G],
    ...p,
  };
}

function translatePorts(ports: NeutronPort[]) {
  const r = translate({ securityGroups: groupsWith([]), ports });
  expectAllValid(r.objects);
  return r;
}

describe("translate: ports", () => {
  it("a bound compute port becomes an endpoint with every field mapped", () => {
    const r = translatePorts([port({
      id: "0c7e0000-1111-4222-8333-444455556666", mac_address: "FA:16:3E:AB:CD:EF", device_id: "vm-42", "binding:host_id": "compute-7.example.org",
      fixed_ips: [{ ip_address: "2001:db8::20" }, { ip_address: "198.18.0.10", subnet_id: "s" }], security_groups: [OTHER, G],
    })]);
    expect(endpoints(r)).toEqual([{
      host: "compute-7.example.org", orchestrator: "openstack", workload: "vm-42", id: "0c7e0000-1111-4222-8333-444455556666",
      name: "tap0c7e0000-11", state: "active", mac: "fa:16:3e:ab:cd:ef", network: "net-1",
      ipv4Nets: ["198.18.0.10/32"], ipv6Nets: ["2001:db8::20/128"],
      profileIds: [OTHER, G].sort(), // sorted: all rules allow, and Neutron's order is not stable
      labels: LABELS,
    }]);
    expect(r.warnings).toEqual([]);
    expect(r.skipped).toEqual([]);
  });

  it("admin_state_up false -> inactive (status is not looked at)", () => {
    expect(endpoints(translatePorts([port({ admin_state_up: false, status: "ACTIVE" })]))[0]!.state).toBe("inactive");
    expect(endpoints(translatePorts([port({ admin_state_up: true, status: "DOWN" })]))[0]!.state).toBe("active");
  });

  it("addresses: fixed IPs as host routes; pairs as address_pairs, deduplicated and sorted numerically; network_id as network", () => {
    const e = endpoints(translatePorts([port({
      network_id: "7d3c0000-aaaa-4bbb-8ccc-000000000001",
      fixed_ips: [{ ip_address: "198.18.0.100" }, { ip_address: "198.18.0.9" }, { ip_address: "2001:db8::a" }],
      allowed_address_pairs: [
        { ip_address: "198.18.0.9", mac_address: "fa:16:3e:00:00:01" }, // a fixed IP with the port's MAC: adds nothing
        { ip_address: "198.18.0.50/32", mac_address: "FA:16:3E:00:00:01" }, // /32, the port's MAC in another case
        { ip_address: "2001:db8::1/128" }, // no MAC: the port's
        { ip_address: "2001:DB8::0:9" },
        { ip_address: "198.18.0.50" }, // the same pair again
      ],
    })]))[0]!;
    expect(e.network).toBe("7d3c0000-aaaa-4bbb-8ccc-000000000001");
    expect(e.ipv4Nets).toEqual(["198.18.0.9/32", "198.18.0.100/32"]);
    expect(e.ipv6Nets).toEqual(["2001:db8::a/128"]);
    expect(e.addressPairs).toEqual([{ net: "198.18.0.50/32" }, { net: "2001:db8::1/128" }, { net: "2001:db8::9/128" }]);
  });

  it("CIDR pairs are kept (a Kubernetes pod range), canonical", () => {
    const r = translatePorts([port({ allowed_address_pairs: [{ ip_address: "2001:db8:1::5/64" }, { ip_address: "198.18.8.0/22" }] })]);
    expect(endpoints(r)[0]!.ipv4Nets).toEqual(["198.18.0.10/32"]);
    expect(endpoints(r)[0]!.addressPairs).toEqual([{ net: "198.18.8.0/22" }, { net: "2001:db8:1::/64" }]);
    expect(r.warnings).toEqual([]);
  });

  it("a pair with its own MAC (VRRP) is kept with that MAC; the endpoint keeps the port's MAC", () => {
    const r = translatePorts([port({ allowed_address_pairs: [{ ip_address: "198.18.0.200", mac_address: "00:00:5E:00:01:07" }, { ip_address: "198.18.0.10", mac_address: "00:00:5e:00:01:07" }] })]);
    expect(endpoints(r)[0]!.mac).toBe("fa:16:3e:00:00:01");
    expect(endpoints(r)[0]!.ipv4Nets).toEqual(["198.18.0.10/32"]);
    // The port's own fixed IP with another MAC is a real pair (that MAC may use it).
    expect(endpoints(r)[0]!.addressPairs).toEqual([{ net: "198.18.0.10/32", mac: "00:00:5e:00:01:07" }, { net: "198.18.0.200/32", mac: "00:00:5e:00:01:07" }]);
    expect(r.warnings).toEqual([]);
  });

  it("Neutron's any-address pairs (0.0.0.0/0, ::/0) become their two /1 halves", () => {
    const r = translatePorts([port({ allowed_address_pairs: [{ ip_address: "0.0.0.0/0" }, { ip_address: "::/0", mac_address: "fa:16:3e:77:77:77" }] })]);
    expect(endpoints(r)[0]!.addressPairs).toEqual([
      { net: "0.0.0.0/1" }, { net: "128.0.0.0/1" }, { net: "::/1", mac: "fa:16:3e:77:77:77" }, { net: "8000::/1", mac: "fa:16:3e:77:77:77" },
    ]);
  });

  it("port security disabled: the allow-all profile (once), no MAC, addresses kept, one warning per port", () => {
    const r = translatePorts([
      port({ id: "p-a", port_security_enabled: false, security_groups: [] }),
      port({ id: "p-b", port_security_enabled: false, security_groups: [G], allowed_address_pairs: [{ ip_address: "198.18.0.77" }] }),
      port({ id: "p-c" }),
    ]);
    const byId = new Map(endpoints(r).map((e) => [e.id, e]));
    for (const id of ["p-a", "p-b"]) {
      expect(byId.get(id)!.profileIds).toEqual([NO_PORT_SECURITY_PROFILE]);
      expect(byId.get(id)!.mac).toBeUndefined();
    }
    expect(byId.get("p-b")!.ipv4Nets).toEqual(["198.18.0.10/32"]);
    expect(byId.get("p-b")!.addressPairs).toEqual([{ net: "198.18.0.77/32" }]);
    expect(byId.get("p-c")!.profileIds).toEqual([G]);
    expect(byId.get("p-c")!.mac).toBe("fa:16:3e:00:00:01");
    expect(profiles(r).filter((p) => p.id === NO_PORT_SECURITY_PROFILE)).toEqual([{
      id: NO_PORT_SECURITY_PROFILE, tags: [], labels: LABELS,
      inboundRules: [{ action: "allow", ipVersion: 4, match: {}, negated: {} }, { action: "allow", ipVersion: 6, match: {}, negated: {} }],
      outboundRules: [{ action: "allow", ipVersion: 4, match: {}, negated: {} }, { action: "allow", ipVersion: 6, match: {}, negated: {} }],
    }]);
    expect(r.warnings).toEqual([
      expect.stringMatching(/^port p-a: port security is disabled/),
      expect.stringMatching(/^port p-b: port security is disabled.*its security groups 11111111-2222-4333-8444-555555555555 are ignored/),
    ]);
  });

  it("the allow-all profile is emitted only when a port needs it", () => {
    expect(profiles(translatePorts([port({})])).map((p) => p.id)).toEqual([G, OTHER]);
    // A skipped port without port security does not need it either.
    expect(profiles(translatePorts([port({ port_security_enabled: false, "binding:host_id": "" })])).map((p) => p.id)).toEqual([G, OTHER]);
    // Absent port_security_enabled (extension off) means enabled.
    const { port_security_enabled: _, ...noField } = port({});
    expect(endpoints(translatePorts([noField]))[0]!.profileIds).toEqual([G]);
  });

  it("a port referencing a group not in the input is kept (deny-all in Palisade) with a warning", () => {
    const missing = "88888888-0000-4000-8000-000000000000";
    const r = translatePorts([port({ security_groups: [G, missing] })]);
    expect(endpoints(r)[0]!.profileIds).toEqual([G, missing]);
    expect(profiles(r).map((p) => p.id)).not.toContain(missing);
    expect(r.warnings).toEqual([expect.stringMatching(new RegExp(`security group ${missing} is not in the input; Palisade treats the missing profile as deny-all`))]);
  });

  it.each<[string, Partial<NeutronPort>, RegExp]>([
    ["DHCP", { device_owner: "network:dhcp" }, /device_owner 'network:dhcp': Neutron applies no security groups to network-owned ports/],
    ["router interface", { device_owner: "network:router_interface" }, /'network:router_interface'.*carry no security meaning/],
    ["DVR router interface", { device_owner: "network:router_interface_distributed", "binding:host_id": "" }, /network-owned/],
    ["load balancer", { device_owner: "Octavia" }, /device_owner 'Octavia' is not an instance port \(only 'compute:\*' ports become endpoints\)/],
    ["unowned", { device_owner: "" }, /no device_owner: the port is not attached to an instance/],
    ["unbound compute port", { "binding:host_id": "" }, /not bound to a host \(binding:host_id is empty\)/],
    ["binding:host_id null", { "binding:host_id": null }, /not bound to a host/],
  ])("skipped: %s", (_name, partial, reason) => {
    const r = translatePorts([port(partial)]);
    expect(endpoints(r)).toEqual([]);
    expect(r.skipped).toEqual([{ port: "0c7e0000-1111-4222-8333-444455556666", reason: expect.stringMatching(reason) }]);
  });

  it("skipped: binding:host_id absent (listed without admin rights) says so", () => {
    const { "binding:host_id": _, ...p } = port({});
    expect(translatePorts([p]).skipped).toEqual([{ port: p.id, reason: expect.stringMatching(/binding:host_id is absent.*admin credentials/) }]);
  });

  it("another zone's compute port is an endpoint too", () => {
    expect(endpoints(translatePorts([port({ device_owner: "compute:az-2" })]))).toHaveLength(1);
  });

  it.each<[string, Partial<NeutronPort>, string, RegExp]>([
    ["host id with a space", { "binding:host_id": "hv 1" }, "binding:host_id", /'hv 1' may contain only.*endpoint host/],
    ["host id too long", { "binding:host_id": "h".repeat(254) }, "binding:host_id", /at most 253 characters/],
    ["empty device id", { device_id: "" }, "device_id", /must not be empty.*endpoint workload/],
    ["device id with a slash", { device_id: "a/b" }, "device_id", /'a\/b' may contain only/],
    ["port id with a colon", { id: "port:1" }, "id", /'port:1' may contain only/],
    ["bad MAC", { mac_address: "fa:16:3e:00:00" }, "mac_address", /'fa:16:3e:00:00' is not a MAC address/],
    ["bad fixed IP", { fixed_ips: [{ ip_address: "198.18.0.10" }, { ip_address: "not-an-ip" }] }, "fixed_ips[1].ip_address", /'not-an-ip' is not an IP address/],
    ["fixed IP that is a network", { fixed_ips: [{ ip_address: "198.18.0.0/24" }] }, "fixed_ips[0].ip_address", /not a single address/],
    ["bad allowed pair", { allowed_address_pairs: [{ ip_address: "1.2.3" }] }, "allowed_address_pairs[0].ip_address", /'1\.2\.3' is not an IP address or CIDR/],
    ["group id that is not a Palisade id", { security_groups: ["a group"] }, "security_groups", /may contain only.*profile id/],
  ])("refused: %s", (_name, partial, field, reason) => {
    const p = port(partial);
    const issues = issuesOf(() => translate({ securityGroups: groupsWith([]), ports: [p] }));
    expect(issues).toEqual([{ object: `port ${p.id}`, field, reason: expect.stringMatching(reason) }]);
  });
});

// ---------------------------------------------------------------------------
// Determinism

describe("translate: determinism", () => {
  const base = (): TranslateInput => ({
    securityGroups: [
      ...parseSecurityGroupsFile(fixture("security-groups.json")),
      ...parseSecurityGroupsFile(fixture("security-groups-address-group.json")),
    ],
    ports: parsePortsFile(fixture("ports.json")),
    addressGroups: [
      ...parseAddressGroupsFile(fixture("address-groups.json")),
      { id: "ag-2", addresses: ["198.18.9.0/24", "2001:db8:9::/64"] },
    ],
  });

  /** Everything whose order carries no meaning, shuffled (a port's security_groups too). */
  function shuffled(seed: number): TranslateInput {
    const rnd = mulberry32(seed);
    const b = base();
    return {
      securityGroups: shuffle(rnd, b.securityGroups).map((g) => ({ ...g, security_group_rules: shuffle(rnd, g.security_group_rules) })),
      ports: shuffle(rnd, b.ports).map((p) => ({
        ...p, fixed_ips: shuffle(rnd, p.fixed_ips), allowed_address_pairs: shuffle(rnd, p.allowed_address_pairs ?? []),
        security_groups: shuffle(rnd, p.security_groups ?? []),
      })),
      addressGroups: shuffle(rnd, b.addressGroups!).map((g) => ({ ...g, addresses: shuffle(rnd, g.addresses) })),
    };
  }

  it("the same input in any order gives byte-identical output", () => {
    const expected = translate(base());
    const text = JSON.stringify(expected);
    expect(profiles(expected).map((p) => p.id)).toEqual([WEB, DEFAULT, ADMIN, NO_PORT_SECURITY_PROFILE]);
    let differentOrders = 0;
    for (let seed = 1; seed <= 25; seed++) {
      const input = shuffled(seed);
      if (input.ports.map((p) => p.id).join() !== base().ports.map((p) => p.id).join()) differentOrders++;
      expect(JSON.stringify(translate(input))).toBe(text);
    }
    expect(differentOrders).toBeGreaterThan(20); // the shuffles really shuffled
  });

  it("translating twice gives equal, independent objects", () => {
    const a = translate(base());
    const b = translate(base());
    expect(b).toEqual(a);
    (profiles(a)[0]!.tags as string[]).push("mutated");
    expect(profiles(b)[0]!.tags).toEqual([WEB]);
  });

  it("profiles are sorted by id and endpoints by key, whatever the input order", () => {
    const r = translate(shuffled(7));
    const pids = profiles(r).map((p) => p.id);
    expect(pids).toEqual([...pids].sort());
    const keys = endpoints(r).map((e) => `${e.host}/${e.orchestrator}/${e.workload}/${e.id}`);
    expect(keys).toEqual([...keys].sort());
    expect(r.objects.findIndex((o) => o.kind === "Endpoint")).toBe(pids.length); // profiles first
  });
});

// ---------------------------------------------------------------------------
// Shape checks of the API files

describe("parse*File: shape checks", () => {
  it("the fixtures parse, keeping what the translator reads", () => {
    const groups = parseSecurityGroupsFile(fixture("security-groups.json"));
    expect(groups.map((g) => g.name)).toEqual(["default", "web"]);
    expect(groups[0]!.security_group_rules).toHaveLength(4);
    expect(groups[1]!.security_group_rules).toHaveLength(8);
    expect(groups[0]!.security_group_rules[2]).toEqual({
      id: "7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e", security_group_id: DEFAULT, direction: "ingress", ethertype: "IPv4",
      protocol: null, port_range_min: null, port_range_max: null, remote_ip_prefix: null, remote_group_id: DEFAULT,
      remote_address_group_id: null, description: "",
    });
    const ports = parsePortsFile(fixture("ports.json"));
    expect(ports).toHaveLength(7);
    expect(ports.map((p) => p.device_owner)).toContain("network:dhcp");
    expect(ports.find((p) => p.port_security_enabled === false)!["binding:host_id"]).toBe("hv2");
    expect(parseAddressGroupsFile(fixture("address-groups.json"))).toEqual([
      { id: ADDRESS_GROUP, name: "admin-nets", addresses: ["198.18.10.0/24", "198.19.0.5/32", "2001:db8:ad::/48"] },
    ]);
  });

  it.each<[string, () => unknown, TranslateIssue[]]>([
    ["missing security_groups key", () => parseSecurityGroupsFile({}), [
      { object: "security groups file", field: "security_groups", reason: expect.stringMatching(/^is required; expected the body of GET \/v2\.0\/security-groups/) },
    ]],
    ["a ports file given as security groups", () => parseSecurityGroupsFile(fixture("ports.json")), [
      { object: "security groups file", field: "security_groups", reason: expect.stringMatching(/this looks like a ports file/) },
    ]],
    ["a single group (GET .../{id})", () => parseSecurityGroupsFile({ security_group: {} }), [
      { object: "security groups file", field: "security_groups", reason: expect.stringMatching(/a single security group.*give the list/) },
    ]],
    ["not an object", () => parseSecurityGroupsFile([1, 2]), [
      { object: "security groups file", field: "", reason: expect.stringMatching(/must be a JSON object, not a list/) },
    ]],
    ["null", () => parsePortsFile(null), [
      { object: "ports file", field: "", reason: expect.stringMatching(/must be a JSON object, not null.*\{"ports": \[\.\.\.\]\}/) },
    ]],
    ["security_groups not a list", () => parseSecurityGroupsFile({ security_groups: { id: "x" } }), [
      { object: "security groups file", field: "security_groups", reason: "must be a list, not an object" },
    ]],
    ["a group that is not an object", () => parseSecurityGroupsFile({ security_groups: ["default"] }), [
      { object: "security groups file", field: "security_groups[0]", reason: 'must be an object, not the string "default"' },
    ]],
    ["rule without direction", () => parseSecurityGroupsFile({ security_groups: [{ id: "g1", security_group_rules: [
      { id: "r1", direction: "egress", ethertype: "IPv4" }, { id: "r2", ethertype: "IPv6" }] }] }), [
      { object: "security group g1", field: "security_group_rules[1].direction", reason: "is required ('ingress' or 'egress')" },
    ]],
    ["group without id, rules missing", () => parseSecurityGroupsFile({ security_groups: [{ name: "x" }] }), [
      { object: "security_groups[0]", field: "id", reason: "is required (a non-empty string)" },
      { object: "security_groups[0]", field: "security_group_rules", reason: "is required (a list)" },
    ]],
    ["every bad rule field at once", () => parseSecurityGroupsFile({ security_groups: [{ id: "g1", security_group_rules: [{
      id: 7, direction: "in", ethertype: "IPv7", protocol: { name: "tcp" }, port_range_min: "80", port_range_max: 1.5,
      remote_ip_prefix: 10, remote_group_id: [], remote_address_group_id: true }] }] }), [
      { object: "security group g1", field: "security_group_rules[0].id", reason: "must be a non-empty string, not number 7" },
      { object: "security group g1", field: "security_group_rules[0].direction", reason: `must be 'ingress' or 'egress', not the string "in"` },
      { object: "security group g1", field: "security_group_rules[0].ethertype", reason: `must be 'IPv4' or 'IPv6', not the string "IPv7"` },
      { object: "security group g1", field: "security_group_rules[0].protocol", reason: "must be a protocol name, a number or null, not an object" },
      { object: "security group g1", field: "security_group_rules[0].port_range_min", reason: `must be an integer or null, not the string "80"` },
      { object: "security group g1", field: "security_group_rules[0].port_range_max", reason: "must be an integer or null, not number 1.5" },
      { object: "security group g1", field: "security_group_rules[0].remote_ip_prefix", reason: "must be a string or null, not number 10" },
      { object: "security group g1", field: "security_group_rules[0].remote_group_id", reason: "must be a string or null, not a list" },
      { object: "security group g1", field: "security_group_rules[0].remote_address_group_id", reason: "must be a string or null, not boolean true" },
    ]],
    ["stateful not a boolean", () => parseSecurityGroupsFile({ security_groups: [{ id: "g1", stateful: "no", security_group_rules: [] }] }), [
      { object: "security group g1", field: "stateful", reason: `must be true or false, not the string "no"` },
    ]],
    ["port without admin_state_up and mac", () => parsePortsFile({ ports: [{ id: "p1", fixed_ips: [] }] }), [
      { object: "port p1", field: "mac_address", reason: "is required (a string)" },
      { object: "port p1", field: "admin_state_up", reason: "is required (true or false)" },
    ]],
    ["port fields of the wrong type", () => parsePortsFile({ ports: [{ id: "p1", mac_address: "fa:16:3e:00:00:01", admin_state_up: true,
      "binding:host_id": 5, fixed_ips: [{ subnet_id: "s" }, "198.18.0.1"], allowed_address_pairs: [{ mac_address: "x" }],
      security_groups: ["g", 3], port_security_enabled: "false" }] }), [
      { object: "port p1", field: "binding:host_id", reason: "must be a string or null, not number 5" },
      { object: "port p1", field: "port_security_enabled", reason: `must be true or false, not the string "false"` },
      { object: "port p1", field: "fixed_ips[0].ip_address", reason: "is required (a string)" },
      { object: "port p1", field: "fixed_ips[1]", reason: `must be an object, not the string "198.18.0.1"` },
      { object: "port p1", field: "allowed_address_pairs[0].ip_address", reason: "is required (a string)" },
      { object: "port p1", field: "security_groups[1]", reason: "must be a security group id (a non-empty string), not number 3" },
    ]],
    ["address group without addresses", () => parseAddressGroupsFile({ address_groups: [{ id: "a1" }, { id: "a2", addresses: ["198.18.0.0/24", 4] }] }), [
      { object: "address group a1", field: "addresses", reason: "is required (a list)" },
      { object: "address group a2", field: "addresses[1]", reason: "must be a CIDR string, not number 4" },
    ]],
    ["a security groups file given as address groups", () => parseAddressGroupsFile(fixture("security-groups.json")), [
      { object: "address groups file", field: "address_groups", reason: expect.stringMatching(/looks like a security groups file/) },
    ]],
  ])("%s", (_name, f, expected) => {
    expect(issuesOf(f)).toEqual(expected);
  });

  it("accepts what Neutron variants send: ethertype in any case, numeric protocol, null device fields, no optional fields", () => {
    const [g] = parseSecurityGroupsFile({ security_groups: [{ id: "g1", security_group_rules: [{ id: "r1", direction: "ingress", ethertype: "ipv6", protocol: 58 }] }] });
    expect(g!.security_group_rules[0]).toMatchObject({ ethertype: "IPv6", protocol: 58, port_range_min: null, remote_ip_prefix: null });
    const [p] = parsePortsFile({ ports: [{ id: "p1", mac_address: "fa:16:3e:00:00:01", admin_state_up: false, device_owner: null, device_id: null }] });
    expect(p).toEqual({ id: "p1", mac_address: "fa:16:3e:00:00:01", admin_state_up: false, device_owner: "", device_id: "", fixed_ips: [] });
  });

  it("never crashes on arbitrary JSON: it parses or throws a TranslateError, and so does translating what it parsed", () => {
    const anyJson = fc.jsonValue({ maxDepth: 4 });
    const ruleish = fc.dictionary(
      fc.constantFrom("id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group_id", "remote_address_group_id"),
      fc.oneof(anyJson, fc.constantFrom("ingress", "egress", "IPv4", "IPv6", "tcp", "icmp", "ipv6-icmp", "0", 0, 22, 65535, 255, "198.18.0.0/24", "::/0", "g1")),
    );
    const groupsFile = fc.record({ security_groups: fc.array(fc.oneof(anyJson, fc.record({ id: fc.constantFrom("g1", "g2", ""), security_group_rules: fc.array(ruleish, { maxLength: 4 }) })), { maxLength: 3 }) });
    const portish = fc.dictionary(
      fc.constantFrom("id", "mac_address", "admin_state_up", "device_owner", "device_id", "binding:host_id", "fixed_ips", "allowed_address_pairs", "port_security_enabled", "security_groups"),
      fc.oneof(anyJson, fc.constantFrom("p1", "fa:16:3e:00:00:01", true, false, "compute:nova", "hv1", [{ ip_address: "198.18.0.1" }], ["g1"], [{ ip_address: "198.18.0.0/24" }])),
    );
    const portsFile = fc.record({ ports: fc.array(fc.oneof(anyJson, portish), { maxLength: 3 }) });
    const attempt = <T>(f: () => T): T | undefined => {
      try {
        return f();
      } catch (e) {
        if (!(e instanceof TranslateError)) throw e;
        expect(e.issues.length).toBeGreaterThan(0);
        return undefined;
      }
    };
    fc.assert(fc.property(fc.oneof(anyJson, groupsFile), fc.oneof(anyJson, portsFile), (gj, pj) => {
      const groups = attempt(() => parseSecurityGroupsFile(gj));
      const ports = attempt(() => parsePortsFile(pj));
      attempt(() => parseAddressGroupsFile(gj));
      if (groups && ports) {
        const r = attempt(() => translate({ securityGroups: groups, ports }));
        if (r) for (const o of r.objects) expect(validateObject(o)).toEqual([]);
      }
    }), { numRuns: 400, seed: 20240311 });
  });
});

describe("translate: leave-out mode, networks and fixed IPs", () => {
  it("leave-out drops only the offending rule, group or port, and reports each", () => {
    const good = nrule({ id: "c1000000-0000-4000-8000-000000000000", protocol: "tcp", port_range_min: 22, port_range_max: 22 });
    const bad = nrule({ id: "c2000000-0000-4000-8000-000000000000", protocol: "tcp", port_range_min: 90, port_range_max: 80 });
    const input = {
      securityGroups: [...groupsWith([good, bad]), { id: "bad group id", security_group_rules: [] }],
      ports: [port({ id: "p-ok" }), port({ id: "p-bad", fixed_ips: [{ ip_address: "198.18.0.256" }] })],
    };
    expect(() => translate(input)).toThrow(TranslateError);
    const r = translate(input, { onProblem: "leave-out" });
    expectAllValid(r.objects);
    const profile = r.objects.find((o) => o.kind === "Profile" && o.profile.id === G) as { profile: Profile } | undefined;
    expect(profile!.profile.inboundRules.map((x) => x.match.dstPorts)).toEqual([[{ first: 22, last: 22 }]]);
    expect(r.objects.some((o) => o.kind === "Profile" && o.profile.id === "bad group id")).toBe(false);
    expect(r.objects.filter((o) => o.kind === "Endpoint").map((o) => (o as { endpoint: Endpoint }).endpoint.id)).toEqual(["p-ok"]);
    expect(r.leftOut.map((i) => i.object).sort()).toEqual([
      "port p-bad", `security group ${G} rule c2000000-0000-4000-8000-000000000000`, "security group bad group id",
    ].sort());
  });

  it("duplicate group ids keep neither copy in leave-out mode", () => {
    const r = translate({ securityGroups: [...groupsWith([]), ...groupsWith([])], ports: [] }, { onProblem: "leave-out" });
    expect(r.objects).toEqual([]);
    expect(r.leftOut[0]!.reason).toMatch(/appears twice/);
  });

  it("networks are address scopes: two tenants on the same subnet both keep their addresses, pairs included", () => {
    const r = translatePorts([
      port({ id: "p-a", network_id: "net-a", fixed_ips: [{ ip_address: "198.18.0.10" }] }),
      port({ id: "p-b", network_id: "net-b", fixed_ips: [{ ip_address: "198.18.0.10" }, { ip_address: "198.18.0.11" }] }),
      // A pair on net-a naming an address that is a fixed IP on net-b only: nobody's on net-a.
      port({ id: "p-c", network_id: "net-a", fixed_ips: [{ ip_address: "198.18.0.20" }], allowed_address_pairs: [{ ip_address: "198.18.0.11" }, { ip_address: "198.18.0.128/25" }] }),
      port({ id: "p-d", network_id: "net-b", fixed_ips: [{ ip_address: "198.18.0.20" }] }),
    ]);
    const byId = new Map(endpoints(r).map((e) => [e.id, e]));
    expect(Object.fromEntries([...byId].map(([id, e]) => [id, [e.network, e.ipv4Nets, e.addressPairs]]))).toEqual({
      "p-a": ["net-a", ["198.18.0.10/32"], undefined],
      "p-b": ["net-b", ["198.18.0.10/32", "198.18.0.11/32"], undefined],
      "p-c": ["net-a", ["198.18.0.20/32"], [{ net: "198.18.0.11/32" }, { net: "198.18.0.128/25" }]],
      "p-d": ["net-b", ["198.18.0.20/32"], undefined],
    });
    expect(r.warnings).toEqual([]);
  });

  it("fixed IPs win within one network: a pair naming another port's fixed IP is left out, a CIDR pair has them cut out", () => {
    const r = translatePorts([
      port({ id: "victim", network_id: "net-a", fixed_ips: [{ ip_address: "198.18.0.10" }, { ip_address: "2001:db8::10" }] }),
      // Same network: the single-address pair is left out, the /24 is split around the victim's address (and its own stays).
      port({
        id: "thief", network_id: "net-a", fixed_ips: [{ ip_address: "198.18.0.20" }],
        allowed_address_pairs: [{ ip_address: "198.18.0.10" }, { ip_address: "198.18.0.0/24" }, { ip_address: "2001:db8::/126" }, { ip_address: "198.18.0.30" }],
      }),
      // A router's gateway counts (a device_owner); a reserved VIP port without one does not: VRRP pairs may name it.
      port({ id: "router", network_id: "net-a", device_owner: "network:router_interface", fixed_ips: [{ ip_address: "198.18.0.1" }] }),
      port({ id: "vip", network_id: "net-a", device_owner: "", fixed_ips: [{ ip_address: "198.18.0.30" }] }),
      // Another network: the victim's address is not its business.
      port({ id: "other", network_id: "net-b", fixed_ips: [{ ip_address: "198.18.1.10" }], allowed_address_pairs: [{ ip_address: "198.18.0.10" }] }),
    ]);
    const byId = new Map(endpoints(r).map((e) => [e.id, e]));
    expect(byId.get("victim")!.ipv4Nets).toEqual(["198.18.0.10/32"]);
    expect(byId.get("thief")!.ipv4Nets).toEqual(["198.18.0.20/32"]);
    expect(byId.get("thief")!.addressPairs).toEqual([
      // 198.18.0.0/24 without .1 (router) and .10 (victim); .20 is the thief's own, .30 a VIP.
      { net: "198.18.0.0/32" }, { net: "198.18.0.2/31" }, { net: "198.18.0.4/30" }, { net: "198.18.0.8/31" }, { net: "198.18.0.11/32" },
      { net: "198.18.0.12/30" }, { net: "198.18.0.16/28" }, { net: "198.18.0.30/32" }, { net: "198.18.0.32/27" }, { net: "198.18.0.64/26" }, { net: "198.18.0.128/25" },
      // 2001:db8::/126 without ::10? Not inside: kept whole.
      { net: "2001:db8::/126" },
    ]);
    expect(byId.get("other")!.addressPairs).toEqual([{ net: "198.18.0.10/32" }]);
    expect(r.warnings).toEqual([
      "port thief: allowed address pair 198.18.0.0/24 covers the fixed IPs of port router, port victim on network net-a; they are cut out of it (fixed IPs win)",
      "port thief: allowed address pair 198.18.0.10/32 is the fixed IP of port victim on network net-a; left out (fixed IPs win: a pair cannot take another port's address)",
    ]);
  });

  it("a CIDR pair that would need more CIDRs than an endpoint may hold, once other ports' fixed IPs are cut out, is left out", () => {
    // 40 fixed IPs spread over a /16: the rest needs far more than 256 CIDRs.
    const victims = Array.from({ length: 40 }, (_, i) => port({ id: `v${String(i).padStart(2, "0")}`, network_id: "net-a", fixed_ips: [{ ip_address: `198.18.${i * 6}.${i + 1}` }] }));
    const r = translatePorts([...victims, port({ id: "wide", network_id: "net-a", fixed_ips: [{ ip_address: "198.19.0.1" }], allowed_address_pairs: [{ ip_address: "198.18.0.0/16" }, { ip_address: "198.19.8.0/24" }] })]);
    const wide = endpoints(r).find((e) => e.id === "wide")!;
    expect(wide.addressPairs).toEqual([{ net: "198.19.8.0/24" }]);
    expect(r.warnings.some((w) => /^port wide: allowed address pair 198\.18\.0\.0\/16 without other ports' fixed IPs needs \d+ CIDRs, more than an endpoint may hold \(256 pairs\); left out/.test(w))).toBe(true);
  });
});
