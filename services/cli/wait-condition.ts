import type { HostStatus } from "../contract/status.js";

/** Hosts still behind revision R: connected, and not yet applied ≥ R without error. */
export function hostsBehind(hosts: Iterable<HostStatus>, revision: number): HostStatus[] {
  return [...hosts].filter((h) => h.connected && (!h.inSync || h.appliedRevision < revision || h.lastError !== ""));
}
