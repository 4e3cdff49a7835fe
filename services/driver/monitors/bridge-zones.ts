// Which bridges of this host get a conntrack zone (DESIGN §6.13): every
// bridge that has a workload port (a prefix-matching interface that is a
// bridge port, from readBridgedPorts), zone = the bridge's ifindex, read
// from sysfs of the driver's namespace.
import { readFile } from "node:fs/promises";
import { zoneOfIfindex, type BridgeZone } from "../plan/zone-chains.js";
import { procHostReader, type HostReader } from "./bridge-check.js";

/** The host check's reader (interfaces, the bridge of a port), plus ifindexes. */
export interface BridgeReader extends Pick<HostReader, "interfaces" | "bridgeOf"> {
  /** The interface's ifindex; undefined when it is gone. */
  ifindex(name: string): Promise<number | undefined>;
}

export const sysfsBridgeReader: BridgeReader = {
  interfaces: () => procHostReader.interfaces(),
  bridgeOf: (name) => procHostReader.bridgeOf(name),
  async ifindex(name) {
    try {
      const n = Number((await readFile(`/sys/class/net/${name}/ifindex`, "utf8")).trim());
      return Number.isInteger(n) ? n : undefined;
    } catch {
      return undefined;
    }
  },
};

/** What iptables accepts as an interface name (and nothing that could break a restore line). */
const IFNAME_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

export interface BridgeZones {
  zones: BridgeZone[];
  /** Bridges with workload ports that got no zone, said for the host's status; undefined when none. */
  problem?: string;
}

export async function readBridgeZones(bridgedPorts: ReadonlyMap<string, string>, r: Pick<BridgeReader, "ifindex">): Promise<BridgeZones> {
  const bridges = new Set(bridgedPorts.values());
  const zones: BridgeZone[] = [];
  const unzoned: string[] = [];
  for (const bridge of [...bridges].sort()) {
    const ifindex = await r.ifindex(bridge);
    if (ifindex === undefined) continue; // gone meanwhile: the next poll sees the host as it is
    const zone = zoneOfIfindex(ifindex);
    if (zone === undefined || !IFNAME_RE.test(bridge)) unzoned.push(`${bridge} (ifindex ${ifindex})`);
    else zones.push({ bridge, zone });
  }
  if (!unzoned.length) return { zones };
  return {
    zones,
    problem: `bridges without a conntrack zone: ${unzoned.join(", ")}; their ports' connections share zone 0, ` +
      `so tenants reusing addresses there can collide (a zone is the bridge's ifindex, 1-65535: recreate the bridge to get a smaller one)`,
  };
}
