// Model objects for calculation-graph tests, built from Calico v1 documents
// through the real parser (so they are validated and normalised).
import { parseDocuments } from "../../services/model/document.js";
import { endpointKeyString, type Endpoint, type Profile } from "../../services/model/types.js";

export function profile(doc: Record<string, unknown>): Profile {
  const [o] = parseDocuments([{ kind: "Profile", ...doc }]);
  if (o?.kind !== "Profile") throw new Error("not a profile");
  return o.profile;
}

export function endpoint(doc: Record<string, unknown>): Endpoint {
  const [o] = parseDocuments([{ kind: "Endpoint", orchestrator: "openstack", state: "active", ...doc }]);
  if (o?.kind !== "Endpoint") throw new Error("not an endpoint");
  return o.endpoint;
}

export const keyOf = (e: Endpoint) => endpointKeyString(e);

/** Rendering constants for the default config (accept mark 0x1000000). */
export const MARK = {
  set: "-j MARK --set-xmark 0x1000000/0x1000000",
  clear: "-j MARK --set-xmark 0x0/0x1000000",
  returnIfSet: "-m mark --mark 0x1000000/0x1000000 -j RETURN",
};

/** Expected to-workload chain for an active endpoint whose profiles all exist. */
/** A class chain's profile jumps; `qi`/`qo` are the mirrored profile chains (DESIGN §6.5). */
/** The first rule of a class chain: a re-check packet goes to the mirrored class chain (DESIGN §6.5). */
export const divert = (mirroredClassChain: string) => `-m mark --mark 0x4000000/0x4000000 -g ${mirroredClassChain}`;

export function jumps(kind: "pi" | "po" | "qi" | "qo", ids: string[]): string[] {
  return [MARK.clear, ...ids.flatMap((id) => [`-j pal-${kind}-${id}`, MARK.returnIfSet]), "-j DROP"];
}
