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

export async function interfaceStatus(name: string, prefixes: readonly string[], read: InterfaceReader): Promise<InterfaceStatus> {
  if (!prefixes.some((p) => name.startsWith(p))) {
    return { state: "error", detail: `interface name does not start with a workload prefix (${prefixes.join(",")}); its traffic is not policed` };
  }
  const op = await read(name);
  if (op === undefined) return { state: "down", detail: "interface not present" };
  if (op === "up" || op === "unknown") return { state: "up", detail: "" };
  return { state: "down", detail: `operstate ${op}` };
}
