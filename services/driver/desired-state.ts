// The controller's desired state for this host, as the driver holds it:
// built from a snapshot, then patched by deltas. Every incoming name and
// member is checked here, before it can reach an iptables-restore or ipset
// line (defence in depth: the controller validated it already).
import { chainKey, type ChainDef, type HostUpdate } from "../contract/host-update.js";
import { OWNED_CHAIN_RE, OWNED_SET_RE, setTypeOf } from "../contract/dataplane-names.js";
import { parseCidr, type IpVersion } from "../model/index.js";
import { ProtocolError } from "../contract/errors.js";

export interface DesiredSet {
  family: IpVersion;
  members: Set<string>;
}

const UNSAFE = /[\u0000-\u001f\u007f]/;

export class DesiredState {
  readonly chains = new Map<string, ChainDef>();
  readonly sets = new Map<string, DesiredSet>();
  /** Endpoint key -> interface name. */
  readonly endpoints = new Map<string, string>();

  /** Applies updates; throws (changing nothing further) on anything unsafe. */
  apply(updates: readonly HostUpdate[]): void {
    for (const u of updates) {
      switch (u.type) {
        case "ipset-update":
          checkSet(u.name, u.family, u.members);
          this.sets.set(u.name, { family: u.family, members: new Set(u.members) });
          break;
        case "ipset-delta": {
          checkSet(u.name, u.family, [...u.added, ...u.removed]);
          let s = this.sets.get(u.name);
          if (!s) this.sets.set(u.name, (s = { family: u.family, members: new Set() }));
          for (const m of u.removed) s.members.delete(m);
          for (const m of u.added) s.members.add(m);
          break;
        }
        case "ipset-remove":
          this.sets.delete(u.name);
          break;
        case "chain-update":
          checkChain(u.chain);
          this.chains.set(chainKey(u.chain.family, u.chain.name), u.chain);
          break;
        case "chain-remove":
          this.chains.delete(chainKey(u.family, u.name));
          break;
        case "endpoint-update":
          if (UNSAFE.test(u.key) || !/^[A-Za-z0-9_-]{1,15}$/.test(u.interfaceName)) throw new ProtocolError(`unsafe endpoint ${JSON.stringify(u.key)}`);
          this.endpoints.set(u.key, u.interfaceName);
          break;
        case "endpoint-remove":
          this.endpoints.delete(u.key);
          break;
      }
    }
  }
}

const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function checkSet(name: string, family: IpVersion, members: readonly string[]): void {
  if (!OWNED_SET_RE.test(name)) throw new ProtocolError(`refusing ipset name ${JSON.stringify(name)}`);
  const withIface = setTypeOf(name) === "hash:net,iface";
  for (const m of members) {
    // hash:net,iface: `<net>,<interface>`, where /0 means "any address on this interface".
    const comma = withIface ? m.indexOf(",") : -1;
    const net = withIface ? m.slice(0, comma) : m;
    const c = comma === -1 && withIface ? undefined : parseCidr(net);
    const ok = c !== undefined && c.version === family && (withIface ? IFACE_RE.test(m.slice(comma + 1)) : c.prefix !== 0);
    if (!ok) throw new ProtocolError(`refusing member ${JSON.stringify(m)} of ipset ${name}`);
  }
}

function checkChain(c: ChainDef): void {
  if (!OWNED_CHAIN_RE.test(c.name)) throw new ProtocolError(`refusing chain name ${JSON.stringify(c.name)}`);
  for (const r of c.rules) {
    if (UNSAFE.test(r) || r.length > 4096) throw new ProtocolError(`refusing rule in ${c.name}: control characters or too long`);
  }
}
