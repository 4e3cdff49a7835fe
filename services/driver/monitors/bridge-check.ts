// What the driver needs from the host for bridged workload ports (DESIGN
// §6.3, §9.3). A tap that is a port of a Linux bridge (linuxbridge agent, or
// OVS's hybrid plug through a qbr bridge) only reaches iptables when
// br_netfilter is loaded and net.bridge.bridge-nf-call-iptables (and
// -ip6tables) is 1 in the driver's network namespace; otherwise its frames
// are switched past every chain Palisade programs, and no rule can stop
// them. The driver cannot repair that itself (the sysctl belongs to the
// operator and changes every bridge of the host), so it says so: the check's
// problem goes into the host's status and keeps the driver from reporting
// healthy.
import { access, readdir, readFile, readlink } from "node:fs/promises";
import { basename } from "node:path";
import type { IpVersion } from "../../model/index.js";

export interface HostReader {
  /** Interface names in the driver's namespace. */
  interfaces(): Promise<string[]>;
  /** Whether the interface is a port of a Linux bridge. */
  isBridgePort(name: string): Promise<boolean>;
  /** The bridge the interface is a port of; undefined when it is none's. */
  bridgeOf(name: string): Promise<string | undefined>;
  /** A sysctl's value under /proc/sys (dots as slashes); undefined when absent. */
  sysctl(key: string): Promise<string | undefined>;
}

export const procHostReader: HostReader = {
  async interfaces() {
    try {
      return await readdir("/sys/class/net");
    } catch {
      return [];
    }
  },
  async isBridgePort(name) {
    // brport exists exactly for bridge ports (not for the bridge itself).
    return access(`/sys/class/net/${name}/brport`).then(() => true, () => false);
  },
  async bridgeOf(name) {
    try {
      await access(`/sys/class/net/${name}/brport`);
      return basename(await readlink(`/sys/class/net/${name}/master`));
    } catch {
      return undefined;
    }
  },
  async sysctl(key) {
    try {
      return (await readFile(`/proc/sys/${key.replaceAll(".", "/")}`, "utf8")).trim();
    } catch {
      return undefined;
    }
  },
};

/**
 * Which workload taps are bridge ports, and of which bridge: one walk of the
 * namespace's interfaces per poll, shared by the topology, the host check
 * and the conntrack zones (each walk costs a few sysfs reads per
 * interface: ~90 ms at 2,000 ports).
 */
export async function readBridgedPorts(prefixes: readonly string[], r: Pick<HostReader, "interfaces" | "bridgeOf">): Promise<Map<string, string>> {
  const ports = new Map<string, string>();
  for (const name of (await r.interfaces()).sort()) {
    if (!prefixes.some((p) => name.startsWith(p))) continue;
    const br = await r.bridgeOf(name);
    if (br !== undefined) ports.set(name, br);
  }
  return ports;
}

/**
 * The bridged ports the driver renders for, and whether br_netfilter is
 * present (its sysctls exist), without which the driver renders no physdev
 * rule (DESIGN §6.3).
 */
export async function readBridgeTopology(bridged: ReadonlyMap<string, string>, r: Pick<HostReader, "sysctl">): Promise<{ physdev: boolean; ports: Map<string, string> }> {
  // A bridge name is an interface name; anything else is not ours to render.
  const ports = new Map([...bridged].filter(([, br]) => /^[A-Za-z0-9_.-]{1,15}$/.test(br)));
  return { physdev: (await r.sysctl(SYSCTL[4])) !== undefined, ports };
}

const SYSCTL: Record<IpVersion, string> = { 4: "net.bridge.bridge-nf-call-iptables", 6: "net.bridge.bridge-nf-call-ip6tables" };
const NAMES_SHOWN = 5;

/**
 * Why bridged workload ports (readBridgedPorts) would not be policed on this
 * host, or undefined when there are none or the host passes them to
 * iptables. Workload ports are the interfaces whose names start with a prefix (endpoint or not: a tap
 * without an endpoint must be dropped too, DESIGN §2.2).
 */
export async function bridgeFilterProblem(bridgedPorts: ReadonlyMap<string, string>, families: readonly IpVersion[], r: Pick<HostReader, "sysctl">): Promise<string | undefined> {
  const bridged = [...bridgedPorts.keys()];
  if (!bridged.length) return undefined;
  const off: string[] = [];
  let absent = false;
  for (const f of families) {
    const v = await r.sysctl(SYSCTL[f]);
    if (v === undefined) absent = true;
    else if (v !== "1") off.push(`${SYSCTL[f]}=${v}`);
  }
  if (!absent && !off.length) return undefined;
  const ports = bridged.slice(0, NAMES_SHOWN).join(", ") + (bridged.length > NAMES_SHOWN ? ` and ${bridged.length - NAMES_SHOWN} more` : "");
  const why = absent
    ? "br_netfilter is not loaded (no /proc/sys/net/bridge in the driver's namespace)"
    : off.join(", ");
  const fix = absent ? "load br_netfilter and set " : "set ";
  return `bridged workload ports are NOT policed: ${ports} ${bridged.length === 1 ? "is a bridge port" : "are bridge ports"} but ${why}; ` +
    `${fix}${families.map((f) => `${SYSCTL[f]}=1`).join(" and ")} on this host (README, "Troubleshooting")`;
}
