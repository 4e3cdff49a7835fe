// The driver's conntrack-zone chain (DESIGN §6.13): in the raw table, before
// conntrack looks a packet up, every frame that a zoned bridge carries gets
// that bridge's zone, so the connections of two bridges (two tenant
// networks that may reuse the same addresses) are tracked apart.
//
// Host-local on purpose: a bridge is the network's L2 domain on a bridged
// hypervisor (linuxbridge: one per network; OVS hybrid plug: one qbr per
// port), so its ifindex names a zone without any knowledge of networks, and
// the chain can be rendered before the controller was ever reached.
import type { ChainDef } from "../../contract/host-update.js";
import { ZONE_CHAIN } from "../../contract/dataplane-names.js";
import type { IpVersion } from "../../model/index.js";

/** A conntrack zone is 16 bits; zone 0 is everyone else's (routed taps, the host). */
export const ZONE_MIN = 1;
export const ZONE_MAX = 65535;

export interface BridgeZone {
  bridge: string;
  zone: number;
}

/** The zone of a bridge: its ifindex, when it fits a zone; undefined otherwise. */
export function zoneOfIfindex(ifindex: number): number | undefined {
  return Number.isInteger(ifindex) && ifindex >= ZONE_MIN && ifindex <= ZONE_MAX ? ifindex : undefined;
}

/**
 * `pal-PREROUTING` (raw) for one family: `-i <bridge> -j CT --zone <n>` per
 * zoned bridge, by bridge name (stable rule hashes, whatever order the
 * bridges were found in). In raw PREROUTING a bridged frame's `-i` is the
 * bridge, the tap only physdev (br_netfilter), which is what we want here:
 * every port of the bridge, workload or not (the network's DHCP and router
 * ports too), shares the network's zone. Empty without zoned bridges: the
 * hook stays, so that drift repair and adoption treat raw like filter.
 */
export function renderZoneChains(zones: readonly BridgeZone[], family: IpVersion): ChainDef[] {
  const sorted = [...zones].sort((a, b) => (a.bridge < b.bridge ? -1 : a.bridge > b.bridge ? 1 : 0));
  return [{ table: "raw", family, name: ZONE_CHAIN, rules: sorted.map((z) => `-i ${z.bridge} -j CT --zone ${z.zone}`) }];
}
