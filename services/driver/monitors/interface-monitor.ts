// Interface status of local endpoints: up / down / error, from sysfs of the
// network namespace the driver runs in. Polled (cheap: one file per endpoint)
// and re-checked right after endpoint updates.
import { readFile } from "node:fs/promises";

export type InterfaceStatus = { state: "up" | "down" | "error"; detail: string };

export type InterfaceReader = (name: string) => Promise<string | undefined>;

export const sysfsReader: InterfaceReader = async (name) => {
  try {
    return (await readFile(`/sys/class/net/${name}/operstate`, "utf8")).trim();
  } catch {
    return undefined;
  }
};

/** A bridge port on a host without br_netfilter: its bridged frames bypass iptables (DESIGN §6.3). */
export const BRIDGE_PORT_UNPOLICED = "port of a Linux bridge, but br_netfilter is not loaded in the driver's namespace: its bridged traffic is not policed (DESIGN §6.3)";

/**
 * `bridgeProblem`: why an up interface's bridged traffic is not enforced as
 * its profiles say (br_netfilter absent, an address contested on its
 * bridge), or undefined.
 */
export async function interfaceStatus(name: string, prefixes: readonly string[], read: InterfaceReader, bridgeProblem?: (name: string) => Promise<string | undefined>): Promise<InterfaceStatus> {
  if (!prefixes.some((p) => name.startsWith(p))) {
    return { state: "error", detail: `interface name does not start with a workload prefix (${prefixes.join(",")}); its traffic is not policed` };
  }
  const op = await read(name);
  if (op === undefined) return { state: "down", detail: "interface not present" };
  if (op === "up" || op === "unknown") {
    const problem = bridgeProblem && (await bridgeProblem(name));
    if (problem) return { state: "error", detail: problem };
    return { state: "up", detail: "" };
  }
  return { state: "down", detail: `operstate ${op}` };
}
