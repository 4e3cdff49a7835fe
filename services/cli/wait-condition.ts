import type { HostStatus } from "../contract/status.js";

/**
 * Hosts still behind revision R: connected and not yet applied ≥ R without
 * error, or refused (a record that is not connected and carries an error:
 * a driver the controller will not serve keeps its old policy, DESIGN §9.3).
 * Hosts with no record at all have no driver and are not waited for.
 */
export function hostsBehind(hosts: Iterable<HostStatus>, revision: number): HostStatus[] {
  return [...hosts].filter((h) => (h.connected ? !h.inSync || h.appliedRevision < revision || h.lastError !== "" : h.lastError !== ""));
}

/**
 * Why a host counts as behind revision R, every reason that applies. A host
 * can have applied R or later and still be behind (not in sync: its current
 * stream has had no successful apply yet; or its last apply failed), and an
 * operator reading "applied 6274" alone would not know what to look at.
 */
export function behindReasons(h: HostStatus, revision: number): string[] {
  const reasons: string[] = [];
  // Not served: nothing it applies can follow the model until that changes.
  if (!h.connected) return [h.lastError !== "" ? `refused by the controller: ${h.lastError}` : "disconnected"];
  if (h.appliedRevision < revision) reasons.push(`revision ${revision} not applied yet`);
  if (!h.inSync) reasons.push("not in sync (no successful apply since its driver connected)");
  if (h.lastError !== "") reasons.push(`last apply failed: ${h.lastError}`);
  return reasons;
}

/** `wait`'s list of hosts behind R: "h1 (applied 6274: not in sync (…))". */
export function describeBehind(hosts: readonly HostStatus[], revision: number): string {
  return hosts.map((h) => `${h.hostname} (applied ${h.appliedRevision}: ${behindReasons(h, revision).join("; ") || "not behind"})`).join(", ");
}
