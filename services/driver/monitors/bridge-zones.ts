// Which bridges of this host get a conntrack zone (DESIGN §6.13): every
// bridge that has a workload port (a prefix-matching interface that is a
// bridge port), zone = the bridge's ifindex. Read from sysfs of the
// driver's namespace; pure apart from the reader.
import { readdir, readFile, readlink } from "node:fs/promises";
import { basename } from "node:path";
import { zoneOfIfindex, type BridgeZone } from "../plan/zone-chains.js";

export interface BridgeReader {
  /** Interface names in the driver's namespace. */
  interfaces(): Promise<string[]>;
  /** The bridge the interface is a port of; undefined when it is none's. */
  bridgeOf(name: string): Promise<string | undefined>;
  /** The interface's ifindex; undefined when it is gone. */
  ifindex(name: string): Promise<number | undefined>;
}

export const sysfsBridgeReader: BridgeReader = {
  async interfaces() {
    try {
      return await readdir("/sys/class/net");
    } catch {
      return [];
    }
  },
  async bridgeOf(name) {
    // brport/bridge exists exactly for bridge ports: a link to the bridge.
    try {
      return basename(await readlink(`/sys/class/net/${name}/brport/bridge`));
    } catch {
      return undefined;
    }
  },
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

export async function readBridgeZones(prefixes: readonly string[], r: BridgeReader): Promise<BridgeZones> {
  const bridges = new Set<string>();
  for (const name of await r.interfaces()) {
    if (!prefixes.some((p) => name.startsWith(p))) continue;
    const br = await r.bridgeOf(name);
    if (br !== undefined) bridges.add(br);
  }
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
