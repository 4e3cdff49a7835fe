// What Neutron's ML2 driver said changed since the watch's last poll
// (DESIGN §11.11, "Change notices"): the ids to fetch by id, coalesced and
// bounded. The watch takes the whole set at the start of a poll (`take`)
// and fetches only those objects instead of listing everything.
//
// Three levels, the strongest wins:
// - by id: ports, security groups (a rule's notice names its group: a
//   deleted rule cannot be fetched, its group can, rules included) and
//   address groups, each a set of distinct ids;
// - poll: something changed but not which (a notice in the old format, one
//   per send that stood for many changes; a network or subnet): the
//   ordinary change-feed poll, which finds everything;
// - full: more distinct ids than `limit` (here or in the driver's own queue,
//   its `overflow`), or a notice the driver could not deliver: a full
//   listing. Once full, ids are not kept (the listing covers them).
// Bounded by `limit` distinct ids in all: memory and one poll's by-id
// requests (BY_ID_CHUNK ids each) stay small whatever Neutron sends.

export const CHANGE_RESOURCES = ["port", "security_group", "security_group_rule", "address_group", "network", "subnet", "log"] as const;
export type ChangeResource = (typeof CHANGE_RESOURCES)[number];

/** One committed change as the ML2 driver names it; a rule's names its group. */
export interface Change {
  resource: ChangeResource;
  id: string;
  /** security_group_rule: its security_group_id. */
  group?: string;
}

/** What a by-id poll fetches (taken whole by the watch). */
export interface PendingBatch {
  /** A full listing: ids were dropped. */
  full: boolean;
  /** The change-feed poll (something changed, not known which). */
  poll: boolean;
  ports: ReadonlySet<string>;
  groups: ReadonlySet<string>;
  addressGroups: ReadonlySet<string>;
}

/** Distinct ids held at most (the driver's queue has the same bound). */
export const PENDING_LIMIT = 1_000;

export function createPendingChanges(limit = PENDING_LIMIT) {
  let full = false;
  let poll = false;
  let ports = new Set<string>();
  let groups = new Set<string>();
  let addressGroups = new Set<string>();
  const size = () => ports.size + groups.size + addressGroups.size;
  const overflow = () => {
    full = true;
    ports = new Set();
    groups = new Set();
    addressGroups = new Set();
  };
  const put = (set: Set<string>, id: string) => {
    if (full || set.has(id)) return;
    if (size() >= limit) return overflow();
    set.add(id);
  };
  return {
    /** Adds a notice's changes; `overflowed`: the driver dropped some (or lost a notice), list everything. */
    add(changes: readonly Change[], overflowed = false): void {
      if (overflowed) overflow();
      for (const c of changes) {
        switch (c.resource) {
          case "port": put(ports, c.id); break;
          case "security_group": put(groups, c.id); break;
          // Without its group a rule cannot be fetched: the feed's poll finds it.
          case "security_group_rule": if (c.group !== undefined) put(groups, c.group); else poll = true; break;
          case "address_group": put(addressGroups, c.id); break;
          // Not read by the watch, but something may follow from them: the feed's poll.
          case "network": case "subnet": poll = true; break;
          // A network log (DESIGN §11.13): nothing to fetch; the wake-up is
          // the point (the watch reads the logs at every poll).
          case "log": break;
        }
      }
    },
    /** Something changed, not known which: the change feed's poll. */
    addUnknown(): void {
      poll = true;
    },
    /** Everything pending, and empty afterwards; undefined when nothing is. */
    take(): PendingBatch | undefined {
      if (!full && !poll && size() === 0) return undefined;
      const b: PendingBatch = { full, poll, ports, groups, addressGroups };
      full = poll = false;
      ports = new Set();
      groups = new Set();
      addressGroups = new Set();
      return b;
    },
    /** Distinct ids held. */
    size,
  };
}

export type PendingChanges = ReturnType<typeof createPendingChanges>;
