// The operator tier (services/openstack/operator-policy.ts, DESIGN §11.12):
// the file's checks (every problem named by its entry, the model's own
// profile validation, nothing of a bad file used) and translate's placement
// of operator profiles around a port's groups: before / after, file order,
// selection by all, project, network, both.
import { describe, expect, it } from "vitest";
import { parseDocuments, toDocument, validateObject } from "../../services/model/document.js";
import type { Endpoint, ModelObject, Profile } from "../../services/model/types.js";
import {
  OPERATOR_PREFIX, OperatorPolicyError, PLACEMENT_LABEL, parseOperatorPolicy, parseOperatorPolicyText, type OperatorPolicy,
} from "../../services/openstack/operator-policy.js";
import { planReconcile, type StoredObject } from "../../services/openstack/reconcile.js";
import {
  NO_PORT_SECURITY_PROFILE, OWNER_LABEL, TranslateError, translate, type NeutronPort, type NeutronSecurityGroup,
} from "../../services/openstack/translate.js";

const G1 = "11111111-2222-4333-8444-555555555555";
const G2 = "66666666-7777-4888-9999-000000000000";
const P_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const P_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const NET_1 = "net-1";
const NET_2 = "net-2";

const group = (id: string): NeutronSecurityGroup => ({
  id, security_group_rules: [{ id: `r-${id}`, security_group_id: id, direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 25, port_range_max: 25 }],
} as NeutronSecurityGroup);

let n = 0;
function port(p: Partial<NeutronPort>): NeutronPort {
  n++;
  return {
    id: `0c7e0000-1111-4222-8333-${String(n).padStart(12, "0")}`, network_id: NET_1, project_id: P_A, mac_address: "fa:16:3e:00:00:01", admin_state_up: true,
    device_owner: "compute:nova", device_id: `vm-${n}`, "binding:host_id": "hv1",
    fixed_ips: [{ ip_address: `198.18.0.${n % 250 + 1}` }], allowed_address_pairs: [], port_security_enabled: true, security_groups: [G2, G1],
    ...p,
  };
}

const entry = (id: string, placement: string, select: unknown, more: Record<string, unknown> = {}) =>
  ({ id: `${OPERATOR_PREFIX}${id}`, placement, select, ...more });
const policy = (...entries: unknown[]): OperatorPolicy => parseOperatorPolicy({ operator_profiles: entries });

const denySmtp = { outbound_rules: [{ action: "deny", protocol: "tcp", dst_ports: [25] }] };
const monitoring = { inbound_rules: [{ action: "allow", src_net: "10.0.0.0/8" }] };

function translateWith(ports: NeutronPort[], operatorPolicy: OperatorPolicy) {
  const r = translate({ securityGroups: [group(G1), group(G2)], ports, operatorPolicy });
  for (const o of r.objects) expect(validateObject(o)).toEqual([]);
  expect(parseDocuments(r.objects.map(toDocument))).toEqual(r.objects);
  return r;
}
const endpointOf = (objects: ModelObject[], id: string): Endpoint =>
  objects.flatMap((o) => (o.kind === "Endpoint" && o.endpoint.id === id ? [o.endpoint] : []))[0]!;
const profilesOf = (objects: ModelObject[]): Profile[] => objects.flatMap((o) => (o.kind === "Profile" ? [o.profile] : []));

function policyIssues(raw: unknown): string[] {
  try {
    parseOperatorPolicy(raw, "ops.yaml");
  } catch (e) {
    if (e instanceof OperatorPolicyError) return e.issues.map((i) => `${i.document}: ${i.field}: ${i.reason}`);
    throw e;
  }
  throw new Error("expected an OperatorPolicyError");
}

describe("operator tier: placement around a port's groups", () => {
  it("before profiles come first and after profiles last, each in file order, the groups sorted between them", () => {
    const p = port({});
    const pol = policy(
      entry("z-after", "after", "all", monitoring),
      entry("y-before", "before", "all", denySmtp),
      entry("a-after", "after", "all", monitoring),
      entry("x-before", "before", "all", denySmtp),
    );
    const r = translateWith([p], pol);
    expect(endpointOf(r.objects, p.id).profileIds).toEqual([
      `${OPERATOR_PREFIX}y-before`, `${OPERATOR_PREFIX}x-before`, G1, G2, `${OPERATOR_PREFIX}z-after`, `${OPERATOR_PREFIX}a-after`,
    ]);
  });

  it("without a policy (or an empty one) profile_ids are the groups, as before", () => {
    const p = port({});
    expect(endpointOf(translate({ securityGroups: [group(G1), group(G2)], ports: [p] }).objects, p.id).profileIds).toEqual([G1, G2]);
    expect(endpointOf(translateWith([p], policy()).objects, p.id).profileIds).toEqual([G1, G2]);
    expect(endpointOf(translateWith([p], parseOperatorPolicyText("", "empty.yaml")).objects, p.id).profileIds).toEqual([G1, G2]);
  });

  it("selects by project, by network, by both (a port must match both), or all", () => {
    const aOn1 = port({ project_id: P_A, network_id: NET_1 });
    const aOn2 = port({ project_id: P_A, network_id: NET_2 });
    const bOn1 = port({ project_id: P_B, network_id: NET_1 });
    const bOn2 = port({ project_id: P_B, network_id: NET_2 });
    const noProject = port({ project_id: undefined, network_id: NET_1 });
    const pol = policy(
      entry("all", "before", "all", denySmtp),
      entry("project-a", "before", { projects: [P_A] }, denySmtp),
      entry("net-2", "after", { networks: [NET_2] }, monitoring),
      entry("b-on-1", "after", { projects: [P_B, "cccccccc"], networks: [NET_1] }, monitoring),
    );
    const r = translateWith([aOn1, aOn2, bOn1, bOn2, noProject], pol);
    const ops = (p: NeutronPort) => endpointOf(r.objects, p.id).profileIds.filter((x) => x.startsWith(OPERATOR_PREFIX)).map((x) => x.slice(OPERATOR_PREFIX.length));
    expect(ops(aOn1)).toEqual(["all", "project-a"]);
    expect(ops(aOn2)).toEqual(["all", "project-a", "net-2"]);
    expect(ops(bOn1)).toEqual(["all", "b-on-1"]);
    expect(ops(bOn2)).toEqual(["all", "net-2"]);
    expect(ops(noProject)).toEqual(["all"]);
  });

  it("every operator profile is written, owned, with its placement label, whether it selects a port or not", () => {
    const pol = policy(entry("smtp", "before", "all", { ...denySmtp, tags: [`${OPERATOR_PREFIX}t`] }), entry("unused", "after", { projects: ["nobody"] }, monitoring));
    const r = translateWith([port({})], pol);
    const ops = profilesOf(r.objects).filter((p) => p.id.startsWith(OPERATOR_PREFIX));
    expect(ops).toEqual([
      { id: `${OPERATOR_PREFIX}smtp`, tags: [`${OPERATOR_PREFIX}t`], inboundRules: [], outboundRules: [{ action: "deny", match: { protocol: "tcp", dstPorts: [{ first: 25, last: 25 }] }, negated: {} }], labels: { [OWNER_LABEL]: "openstack", [PLACEMENT_LABEL]: "before" } },
      { id: `${OPERATOR_PREFIX}unused`, tags: [], inboundRules: [{ action: "allow", match: { srcNet: "10.0.0.0/8" }, negated: {} }], outboundRules: [], labels: { [OWNER_LABEL]: "openstack", [PLACEMENT_LABEL]: "after" } },
    ]);
  });

  it("a port without groups gets the operator profiles alone; a port without port security gets them around the allow-all profile", () => {
    const none = port({ security_groups: [] });
    const open = port({ port_security_enabled: false, security_groups: [G1] });
    const pol = policy(entry("b", "before", "all", denySmtp), entry("a", "after", "all", monitoring));
    const r = translateWith([none, open], pol);
    expect(endpointOf(r.objects, none.id).profileIds).toEqual([`${OPERATOR_PREFIX}b`, `${OPERATOR_PREFIX}a`]);
    expect(endpointOf(r.objects, open.id).profileIds).toEqual([`${OPERATOR_PREFIX}b`, NO_PORT_SECURITY_PROFILE, `${OPERATOR_PREFIX}a`]);
  });

  it("removing an entry from the file deletes its profile and takes it off the ports (reconciliation, like a group)", () => {
    const p = port({});
    const pol = policy(entry("smtp", "before", "all", denySmtp));
    const stored: StoredObject[] = translateWith([p], pol).objects.map((object, i) => ({ object, revision: i + 1 }));
    const plan = planReconcile(translateWith([p], policy()).objects, stored);
    expect(plan.deletes.map((d) => d.ref)).toEqual([{ kind: "Profile", id: `${OPERATOR_PREFIX}smtp` }]);
    expect(plan.writes.map((w) => w.object.kind === "Endpoint" && w.object.endpoint.profileIds)).toEqual([[G1, G2]]);
    expect(plan.conflicts).toEqual([]);
  });

  it("the operator prefix is reserved: a group or a port's group id using it is refused", () => {
    const bad = `${OPERATOR_PREFIX}sneaky`;
    let issues: string[] = [];
    try {
      translate({ securityGroups: [group(G1), { id: bad, security_group_rules: [] } as unknown as NeutronSecurityGroup], ports: [port({ security_groups: [bad] })] });
    } catch (e) {
      if (!(e instanceof TranslateError)) throw e;
      issues = e.issues.map((i) => `${i.object}: ${i.field}`);
    }
    expect(issues.some((i) => i.startsWith(`security group ${bad}: id`))).toBe(true);
    expect(issues.some((i) => i.endsWith(": security_groups"))).toBe(true);
  });
});

describe("operator tier: the file", () => {
  it("reads YAML and JSON alike", () => {
    const yaml = `operator_profiles:\n  - id: ${OPERATOR_PREFIX}smtp\n    placement: before\n    select: all\n    outbound_rules:\n      - {action: deny, protocol: tcp, dst_ports: [25]}\n`;
    const json = JSON.stringify({ operator_profiles: [entry("smtp", "before", "all", denySmtp)] });
    expect(parseOperatorPolicyText(yaml, "a.yaml")).toEqual(parseOperatorPolicyText(json, "a.json"));
    expect(parseOperatorPolicyText(json, "a.json").profiles[0]!.profile.outboundRules[0]!.action).toBe("deny");
  });

  it("every problem is named by its entry (index and id), rules checked by the model's own validation", () => {
    const issues = policyIssues({
      operator_profiles: [
        entry("ok", "before", "all", denySmtp),
        { id: "no-prefix", placement: "middle", select: "all" },
        entry("bad-rule", "before", "all", { outbound_rules: [{ action: "reject", protocol: "tcp", dst_ports: [70000] }] }),
        entry("ok", "after", { projects: [] }),
        entry("labels", "after", { networks: ["n"], zones: ["z"] }, { labels: { a: "b" }, tags: ["web"] }),
        entry("no-select", "after", undefined),
        "a string",
      ],
      extra: 1,
    });
    expect(issues).toEqual([
      "file: extra: unknown field (expected operator_profiles)",
      `operator_profiles[1] (no-prefix): id: must start with '${OPERATOR_PREFIX}' (so it can never be a security group's id)`,
      "operator_profiles[1] (no-prefix): placement: 'middle' is not before or after",
      expect.stringMatching(/^operator_profiles\[2\] \(openstack-operator-bad-rule\): outbound_rules\[0\]\.action: must be allow or deny$/),
      expect.stringMatching(/^operator_profiles\[2\] \(openstack-operator-bad-rule\): outbound_rules\[0\]\.dst_ports.*/),
      `operator_profiles[3] (${OPERATOR_PREFIX}ok): id: appears twice (also operator_profiles[0])`,
      `operator_profiles[3] (${OPERATOR_PREFIX}ok): select.projects: must be a non-empty list of Neutron ids (select: all selects every port)`,
      `operator_profiles[4] (${OPERATOR_PREFIX}labels): labels: not allowed: the adapter sets an operator profile's labels`,
      `operator_profiles[4] (${OPERATOR_PREFIX}labels): select.zones: unknown field (expected projects, networks)`,
      `operator_profiles[4] (${OPERATOR_PREFIX}labels): tags[0]: must start with '${OPERATOR_PREFIX}' (a security group's tag is its id: an operator tag must not make ports members of a group)`,
      `operator_profiles[5] (${OPERATOR_PREFIX}no-select): select: is required: all, or {projects: [...], networks: [...]}`,
      "operator_profiles[6]: : must be a mapping: id, placement, select, inbound_rules, outbound_rules, tags",
    ]);
  });

  it("a missing placement, a bad id, not YAML, not a mapping: refused", () => {
    expect(policyIssues({ operator_profiles: [{ id: `${OPERATOR_PREFIX}x y`, select: "all" }] })).toEqual([
      `operator_profiles[0] (${OPERATOR_PREFIX}x y): placement: is required: before or after the port's security groups`,
      expect.stringMatching(/^operator_profiles\[0\] \(openstack-operator-x y\): id: /),
    ]);
    expect(() => parseOperatorPolicyText("operator_profiles: [", "bad.yaml")).toThrow(/bad\.yaml: 1 problem\(s\) in the operator policy, none of it used: file: not valid YAML or JSON/);
    expect(policyIssues([1, 2])).toEqual(["file: : must be a mapping with operator_profiles: [...]"]);
    expect(policyIssues({ operator_profiles: {} })).toEqual(["file: operator_profiles: must be a list"]);
  });
});
