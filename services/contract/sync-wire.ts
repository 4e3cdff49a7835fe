// HostUpdate <-> palisade.sync.v1 messages, and chunking: no message nears
// gRPC's 4 MiB default limit, whatever the size of a set.
import type { ChainDef, HostUpdate, MacCheck } from "./host-update.js";
import { ProtocolError } from "./errors.js";
import { IpFamily, type SyncResponse, type Update } from "../gen/palisade/sync/v1/sync.js";
import type { IpVersion } from "../model/index.js";

/** Target size of one SyncResponse; far below the 4 MiB limit. */
export const MAX_BATCH_BYTES = 1 << 20;
/** Members per ipset message. */
export const MAX_MEMBERS_PER_UPDATE = 10_000;

export const familyToPb = (f: IpVersion) => (f === 4 ? IpFamily.IP_FAMILY_V4 : IpFamily.IP_FAMILY_V6);
export function familyFromPb(f: IpFamily): IpVersion {
  if (f === IpFamily.IP_FAMILY_V4) return 4;
  if (f === IpFamily.IP_FAMILY_V6) return 6;
  throw new ProtocolError(`unknown IP family ${f}`);
}

export function updateToPb(u: HostUpdate): Update {
  switch (u.type) {
    case "ipset-update": return { update: { $case: "ipsetUpdate", value: { name: u.name, family: familyToPb(u.family), members: u.members } } };
    case "ipset-delta": return { update: { $case: "ipsetDelta", value: { name: u.name, family: familyToPb(u.family), added: u.added, removed: u.removed } } };
    case "ipset-remove": return { update: { $case: "ipsetRemove", value: { name: u.name, family: familyToPb(u.family) } } };
    case "chain-update": return { update: { $case: "chainUpdate", value: { table: u.chain.table, family: familyToPb(u.chain.family), name: u.chain.name, rules: [...u.chain.rules] } } };
    case "chain-remove": return { update: { $case: "chainRemove", value: { table: u.table, family: familyToPb(u.family), name: u.name } } };
    case "endpoint-update": {
      const m = u.mac6;
      const value = {
        endpointKey: u.key, interfaceName: u.interfaceName,
        ipv6Mac: m && "mac" in m ? m.mac : "",
        ipv6MacEntries: m && "entries" in m ? m.entries.map((e) => ({ net: e.net, mac: e.mac ?? "" })) : [],
      };
      return { update: { $case: "endpointUpdate", value } };
    }
    case "endpoint-remove": return { update: { $case: "endpointRemove", value: { endpointKey: u.key } } };
  }
}

/** Throws on messages the driver cannot interpret (unknown family, unknown table). */
export function updateFromPb(u: Update): HostUpdate | undefined {
  const x = u.update;
  if (!x) return undefined;
  switch (x.$case) {
    case "ipsetUpdate": return { type: "ipset-update", name: x.value.name, family: familyFromPb(x.value.family), members: x.value.members };
    case "ipsetDelta": return { type: "ipset-delta", name: x.value.name, family: familyFromPb(x.value.family), added: x.value.added, removed: x.value.removed };
    case "ipsetRemove": return { type: "ipset-remove", name: x.value.name, family: familyFromPb(x.value.family) };
    case "chainUpdate": {
      if (x.value.table !== "filter") throw new ProtocolError(`unsupported table ${JSON.stringify(x.value.table)}`);
      const chain: ChainDef = { table: "filter", family: familyFromPb(x.value.family), name: x.value.name, rules: x.value.rules };
      return { type: "chain-update", chain };
    }
    case "chainRemove": {
      if (x.value.table !== "filter") throw new ProtocolError(`unsupported table ${JSON.stringify(x.value.table)}`);
      return { type: "chain-remove", table: "filter", family: familyFromPb(x.value.family), name: x.value.name };
    }
    case "endpointUpdate": {
      const { endpointKey: key, interfaceName, ipv6Mac, ipv6MacEntries } = x.value;
      if (ipv6Mac && ipv6MacEntries.length) throw new ProtocolError(`endpoint ${JSON.stringify(key)}: both ipv6_mac and ipv6_mac_entries are set`);
      const mac6: MacCheck | undefined = ipv6Mac ? { mac: ipv6Mac }
        : ipv6MacEntries.length ? { entries: ipv6MacEntries.map((e) => (e.mac ? { net: e.net, mac: e.mac } : { net: e.net })) } : undefined;
      return mac6 ? { type: "endpoint-update", key, interfaceName, mac6 } : { type: "endpoint-update", key, interfaceName };
    }
    case "endpointRemove": return { type: "endpoint-remove", key: x.value.endpointKey };
  }
}

function sizeOf(u: HostUpdate): number {
  switch (u.type) {
    case "ipset-update": return 64 + u.members.reduce((n, m) => n + m.length + 2, 0);
    case "ipset-delta": return 64 + [...u.added, ...u.removed].reduce((n, m) => n + m.length + 2, 0);
    case "chain-update": return 64 + u.chain.rules.reduce((n, r) => n + r.length + 3, 0);
    case "endpoint-update": return 96 + (u.mac6 && "entries" in u.mac6 ? u.mac6.entries.reduce((n, e) => n + e.net.length + 24, 0) : 24);
    default: return 96;
  }
}

/** Splits big set updates into an update plus delta chunks (order kept). */
function splitLarge(u: HostUpdate): HostUpdate[] {
  const N = MAX_MEMBERS_PER_UPDATE;
  if (u.type === "ipset-update" && u.members.length > N) {
    const out: HostUpdate[] = [{ ...u, members: u.members.slice(0, N) }];
    for (let i = N; i < u.members.length; i += N) out.push({ type: "ipset-delta", name: u.name, family: u.family, added: u.members.slice(i, i + N), removed: [] });
    return out;
  }
  if (u.type === "ipset-delta" && u.added.length + u.removed.length > N) {
    const out: HostUpdate[] = [];
    for (let i = 0; i < u.removed.length; i += N) out.push({ ...u, added: [], removed: u.removed.slice(i, i + N) });
    for (let i = 0; i < u.added.length; i += N) out.push({ ...u, added: u.added.slice(i, i + N), removed: [] });
    return out;
  }
  return [u];
}

/**
 * Packs updates into SyncResponses of at most ~MAX_BATCH_BYTES, keeping
 * their order. `first`/`last` flags go on the first/last message.
 */
export function packBatches(
  revision: number, updates: HostUpdate[], flags: { snapshotStart?: boolean; inSync?: boolean; acksForContentOnly?: boolean } = {},
): SyncResponse[] {
  const acksForContentOnly = flags.acksForContentOnly ?? false;
  const out: SyncResponse[] = [];
  let cur: Update[] = [];
  let bytes = 0;
  for (const u of updates.flatMap(splitLarge)) {
    const s = sizeOf(u);
    if (cur.length && bytes + s > MAX_BATCH_BYTES) {
      out.push({ revision, snapshotStart: false, inSync: false, updates: cur, partial: true, acksForContentOnly });
      cur = [];
      bytes = 0;
    }
    cur.push(updateToPb(u));
    bytes += s;
  }
  out.push({ revision, snapshotStart: false, inSync: false, updates: cur, partial: false, acksForContentOnly });
  if (flags.snapshotStart) out[0]!.snapshotStart = true;
  if (flags.inSync) out[out.length - 1]!.inSync = true;
  return out;
}
