// What a driver can program beyond the original contract, said in
// `Hello.features` (DESIGN §6.2). The controller renders for one dataplane
// and refuses, at hello, a driver that lacks part of it: such a driver
// receives nothing (no snapshot, no jump to a chain it does not have), and
// its operator is told which upgrade it needs. So controllers and drivers
// can be upgraded in either order without a host ever applying something
// its driver cannot program.

/** The set-based layout's set types: `hash:net,iface`, `bitmap:ip,mac`, `list:set` (DESIGN §6.5). */
export const FEATURE_SET_LAYOUT = "set-layout";
/** The flow-report chains `pal-log`/`pal-log-allow` that report points jump to (DESIGN §6.12). */
export const FEATURE_FLOW_LOG = "flow-log";

/**
 * The chain `pal-ct-admit` every accept goes to, and the reply-direction
 * re-check mark the workload chains divert on (DESIGN §6.14): the controller's
 * workload-to-host accept jumps to it.
 */
export const FEATURE_CT_ADMIT = "ct-admit";

/**
 * The position layout (DESIGN §6.5): endpoints are members of the active set
 * and of one set per (position, profile), not of class sets. A driver must
 * know those sets to tell which endpoint holds an address (revocation, no
 * inheritance: DESIGN §6.14) and which bridge ports disagree (DESIGN §6.3);
 * one that does not would miss both, so it is refused.
 */
export const FEATURE_POSITION_LAYOUT = "position-layout";

/** What this build's driver announces. */
export const DRIVER_FEATURES: readonly string[] = [FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG, FEATURE_CT_ADMIT, FEATURE_POSITION_LAYOUT];

/** What this build's controller renders, hence requires of every driver. */
export const REQUIRED_FEATURES: readonly string[] = [FEATURE_SET_LAYOUT, FEATURE_FLOW_LOG, FEATURE_CT_ADMIT, FEATURE_POSITION_LAYOUT];

/**
 * The features a hello's list stands for. Flow reports predate the features
 * field: every driver that announced `set-layout` (the first feature ever
 * announced) already programmed the flow-log chains, though it does not say so.
 */
export function announcedFeatures(announced: readonly string[]): Set<string> {
  const out = new Set(announced);
  if (out.has(FEATURE_SET_LAYOUT)) out.add(FEATURE_FLOW_LOG);
  return out;
}

/** Required features a hello lacks, in REQUIRED_FEATURES order (empty: the driver is served). */
export function missingFeatures(announced: readonly string[], required: readonly string[] = REQUIRED_FEATURES): string[] {
  const have = announcedFeatures(announced);
  return required.filter((f) => !have.has(f));
}

/** What an operator reads when a driver is refused for lacking features. */
export function tooOldMessage(missing: readonly string[]): string {
  return `driver too old: lacks features [${missing.join(", ")}]; upgrade palisade-driver on this host (it keeps enforcing its last programmed state meanwhile)`;
}
