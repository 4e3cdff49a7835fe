// Model <-> protobuf messages of palisade.policy.v1. The API carries typed
// messages; validation happens on the model (services/model) on both sides.
import * as pb from "../gen/palisade/policy/v1/model.js";
import type { Document, ObjectRef as PbObjectRef } from "../gen/palisade/policy/v1/policy.js";
import type { Endpoint, EndpointKey, Match, ModelObject, Profile, Rule } from "../model/index.js";
import type { ObjectRef } from "./object-ref.js";

function matchToPb(m: Match): pb.Match {
  return {
    protocol: m.protocol, srcNet: m.srcNet, dstNet: m.dstNet, srcTag: m.srcTag, dstTag: m.dstTag,
    srcPorts: m.srcPorts ?? [], dstPorts: m.dstPorts ?? [], icmpType: m.icmpType, icmpCode: m.icmpCode,
  };
}

function matchFromPb(m: pb.Match | undefined): Match {
  const out: Match = {};
  if (!m) return out;
  if (m.protocol !== undefined) out.protocol = m.protocol.toLowerCase();
  if (m.srcNet !== undefined) out.srcNet = m.srcNet;
  if (m.dstNet !== undefined) out.dstNet = m.dstNet;
  if (m.srcTag !== undefined) out.srcTag = m.srcTag;
  if (m.dstTag !== undefined) out.dstTag = m.dstTag;
  if (m.srcPorts.length) out.srcPorts = m.srcPorts.map((p) => ({ first: p.first, last: p.last }));
  if (m.dstPorts.length) out.dstPorts = m.dstPorts.map((p) => ({ first: p.first, last: p.last }));
  if (m.icmpType !== undefined) out.icmpType = m.icmpType;
  if (m.icmpCode !== undefined) out.icmpCode = m.icmpCode;
  return out;
}

export function ruleToPb(r: Rule): pb.Rule {
  return {
    action: r.action === "deny" ? pb.Action.ACTION_DENY : pb.Action.ACTION_ALLOW,
    ipVersion: r.ipVersion ?? 0,
    match: matchToPb(r.match),
    negated: matchToPb(r.negated),
  };
}

export function ruleFromPb(r: pb.Rule): Rule {
  const rule: Rule = {
    // Unknown enum values become an invalid action, refused by validation.
    action: r.action === pb.Action.ACTION_DENY ? "deny" : r.action === pb.Action.ACTION_ALLOW || r.action === pb.Action.ACTION_UNSPECIFIED ? "allow" : ("invalid" as "allow"),
    match: matchFromPb(r.match),
    negated: matchFromPb(r.negated),
  };
  if (r.ipVersion !== 0) rule.ipVersion = r.ipVersion as 4 | 6;
  return rule;
}

export function profileToPb(p: Profile, revision = 0): pb.Profile {
  return { id: p.id, tags: p.tags, inboundRules: p.inboundRules.map(ruleToPb), outboundRules: p.outboundRules.map(ruleToPb), labels: p.labels, revision };
}

export function profileFromPb(p: pb.Profile): Profile {
  return { id: p.id, tags: p.tags, inboundRules: p.inboundRules.map(ruleFromPb), outboundRules: p.outboundRules.map(ruleFromPb), labels: p.labels ?? {} };
}

export function endpointToPb(e: Endpoint, revision = 0): pb.Endpoint {
  return {
    host: e.host, orchestrator: e.orchestrator, workload: e.workload, id: e.id, name: e.name,
    state: e.state === "active" ? pb.EndpointState.ENDPOINT_STATE_ACTIVE : pb.EndpointState.ENDPOINT_STATE_INACTIVE,
    mac: e.mac ?? "", ipv4Nets: e.ipv4Nets, ipv6Nets: e.ipv6Nets, profileIds: e.profileIds, labels: e.labels, revision,
    network: e.network ?? "",
    addressPairs: (e.addressPairs ?? []).map((a) => ({ ipAddress: a.net, macAddress: a.mac ?? "" })),
  };
}

export function endpointFromPb(e: pb.Endpoint): Endpoint {
  const state = e.state === pb.EndpointState.ENDPOINT_STATE_ACTIVE ? "active" : e.state === pb.EndpointState.ENDPOINT_STATE_INACTIVE ? "inactive" : ("" as "active");
  const out: Endpoint = {
    host: e.host, orchestrator: e.orchestrator, workload: e.workload, id: e.id, name: e.name, state,
    ipv4Nets: e.ipv4Nets, ipv6Nets: e.ipv6Nets, profileIds: e.profileIds, labels: e.labels ?? {},
  };
  if (e.mac) out.mac = e.mac.toLowerCase();
  if (e.network) out.network = e.network;
  if (e.addressPairs?.length) out.addressPairs = e.addressPairs.map((a) => (a.macAddress ? { net: a.ipAddress, mac: a.macAddress.toLowerCase() } : { net: a.ipAddress }));
  return out;
}

export function documentToPb(o: ModelObject): Document {
  return o.kind === "Profile"
    ? { kind: { $case: "profile", value: profileToPb(o.profile) } }
    : { kind: { $case: "endpoint", value: endpointToPb(o.endpoint) } };
}

export function documentFromPb(d: Document): ModelObject | undefined {
  if (d.kind?.$case === "profile") return { kind: "Profile", profile: profileFromPb(d.kind.value) };
  if (d.kind?.$case === "endpoint") return { kind: "Endpoint", endpoint: endpointFromPb(d.kind.value) };
  return undefined;
}

export function refToPb(r: ObjectRef): PbObjectRef {
  return r.kind === "Profile" ? { kind: { $case: "profileId", value: r.id } } : { kind: { $case: "endpoint", value: r.key } };
}

export function refFromPb(r: PbObjectRef): ObjectRef | undefined {
  if (r.kind?.$case === "profileId") return { kind: "Profile", id: r.kind.value };
  if (r.kind?.$case === "endpoint") {
    const { host, orchestrator, workload, id } = r.kind.value;
    return { kind: "Endpoint", key: { host, orchestrator, workload, id } };
  }
  return undefined;
}

export function endpointKeyFromPb(k: pb.EndpointKey | undefined): EndpointKey {
  return { host: k?.host ?? "", orchestrator: k?.orchestrator ?? "", workload: k?.workload ?? "", id: k?.id ?? "" };
}
