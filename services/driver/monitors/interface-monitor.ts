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

/** An up workload interface that is a Linux bridge port: its traffic is dropped (DESIGN §6.3), which its status must say. */
export const BRIDGE_PORT_DETAIL = "port of a Linux bridge: bridged workload ports are dropped, not yet enforced by their profiles (DESIGN §6.3)";

export async function interfaceStatus(name: string, prefixes: readonly string[], read: InterfaceReader, isBridgePort?: (name: string) => Promise<boolean>): Promise<InterfaceStatus> {
  if (!prefixes.some((p) => name.startsWith(p))) {
    return { state: "error", detail: `interface name does not start with a workload prefix (${prefixes.join(",")}); its traffic is not policed` };
  }
  const op = await read(name);
  if (op === undefined) return { state: "down", detail: "interface not present" };
  if (op === "up" || op === "unknown") {
    if (isBridgePort && (await isBridgePort(name))) return { state: "error", detail: BRIDGE_PORT_DETAIL };
    return { state: "up", detail: "" };
  }
  return { state: "down", detail: `operstate ${op}` };
}
