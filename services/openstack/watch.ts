// The change-driven watch (DESIGN §11.7): what `palisade-openstack watch`
// reads from Neutron each poll. It keeps the last complete picture of
// Neutron (ports, security groups, address groups, the bindings of ports in
// a live migration) and refreshes only what changed; every `resyncMs` it
// reads everything again (the safety net for anything a feed could miss).
//
// Two change feeds; Neutron decides which one works (feed "auto"):
// - "changed-since": GET /ports?changed_since=T and /security-groups?changed_since=T
//   return only what changed since T (Neutron's timestamp extension). Idle,
//   the answers are empty, whatever the size of the cloud. Neutron refuses
//   the filter while `filter_validation` is on (its default): the operator
//   sets `filter_validation = false` to get this feed. Deletions do not show
//   up in it (a deleted object is simply gone), so every `deletionCheckMs`,
//   and at once when a port appears (its address may be a deleted port's),
//   the revisions listing below runs too.
// - "revisions": GET /ports?fields=id&fields=revision_number and the same
//   for groups — a few dozen bytes per object, so linear in the cloud's size
//   but small — compared with what is held; then only the changed objects
//   are fetched by id. Catches deletions (missing ids) in the same request.
// Both rest on Neutron's revision_number: every change of a port bumps it
// (an inactive binding created, activated or deleted included), and a rule
// created or deleted bumps its group's (checked against the real Neutron).
// T is Neutron's own clock (its Date header) minus CURSOR_LAG_MS: updated_at
// has one-second resolution and is set before the transaction commits, so
// the window overlaps and the revision numbers deduplicate. The Date header
// is that of the last answer, so T is also moved back by the local time
// elapsed since the first request of the poll was sent: T precedes every
// read the poll's picture rests on (listings, bindings), and a change
// committed while they ran is asked for again by the next poll, however
// long the reads took.
//
// A missing revision_number (an object Neutron returned without one) never
// hides a change: `revisionMoved` counts it as moved, everywhere.
//
// Address groups are few and have no changed_since: listed whole every poll.
//
// By id (DESIGN §11.11, "Change notices"): when the ML2 mechanism driver's
// notices name what changed (pending-changes.ts), a poll fetches only those
// objects (`?id=…`, BY_ID_CHUNK per request; a rule's notice names its
// group, which holds its rules) and lists nothing: its cost is the change's,
// not the cloud's. An id missing from the answer was deleted. A new port
// that has a held port's address on its network re-reads that port too (it
// may be the deleted port whose notice has not arrived). An object is taken
// only when its revision_number is newer than the one held (`newer`), so a
// by-id read never puts an older state back over a newer one. The change
// feed (at --interval) and the full listing (at --resync-interval, after a
// failure, or when notices overflowed) stay the safety net.
//
// Port bindings (DESIGN §11.6): GET /ports/{id}/bindings is one request per
// port, so it is read only for a port whose revision changed while watched
// (a binding created, activated or deleted bumps it), or whose
// binding:profile says migrating_to (Nova sets it when a live migration
// starts: the case of a migration already under way when the adapter
// starts). Only ports with an inactive binding are kept in `bindings`.
import type { ChangeCollection, NeutronClient } from "./neutron-client.js";
import { neutronTime } from "./neutron-client.js";
import type { NeutronAddressGroup, NeutronBinding, NeutronPort, NeutronSecurityGroup } from "./neutron-types.js";
import type { PendingBatch } from "./pending-changes.js";
import type { TranslateInput } from "./translate.js";

export type ChangeFeed = "changed-since" | "revisions";

/** How far the changed_since cursor trails Neutron's clock (one-second timestamps; commit after flush). */
export const CURSOR_LAG_MS = 5_000;

export interface WatcherOptions {
  neutron: NeutronClient;
  /** "auto": changed-since when Neutron accepts it, else revisions. */
  feed: "auto" | ChangeFeed;
  /** Full listing at least this often (ms). */
  resyncMs: number;
  /** changed-since feed: the revisions listing (deletions) at least this often (ms). */
  deletionCheckMs: number;
  /**
   * The change feed at least this often (ms), also while notices keep
   * every poll a by-id one: the feed is the safety net for what no notice
   * named. Absent: only when nothing is pending.
   */
  feedMs?: number;
  /**
   * A notice's overflow asks for a full listing: at once, but no sooner
   * than this (ms, default 10 s) after the last one an overflow made: the
   * feed's poll meanwhile, the listing when the time has come. (The notices' endpoint takes no credentials: a client
   * sending "overflow" in a loop must not make the watch list the whole
   * cloud back to back.)
   */
  overflowFullMinMs?: number;
  /** For tests. */
  now?: () => number;
}

export interface PollResult {
  /** full: everything was read; changes: something changed; idle: nothing did. */
  kind: "full" | "changes" | "idle";
  /** How changes were looked for: the whole listing, the change feed, or the ids the ML2 driver's notices named. */
  via: "full" | "feed" | "by-id";
  feed: ChangeFeed;
  /** The whole current picture, for translate() (built on demand: an idle poll does not need it). */
  input(): TranslateInput;
  /** What this poll found changed (objects, by kind). */
  changed: { ports: number; deletedPorts: number; groups: number; deletedGroups: number; addressGroups: boolean; bindingReads: number };
}

type Held<T> = Map<string, T>;

/**
 * Whether an object's revision moved from `held` to `now`. Without a
 * revision number on either side nothing says it did not: moved.
 */
export function revisionMoved(held: number | undefined, now: number | undefined): boolean {
  return held === undefined || now === undefined || held !== now;
}

/**
 * Whether an object read by id should replace the one held: only a newer
 * revision (an older one is a read that raced a newer write already held).
 * Without a revision number on either side nothing says it is not newer: yes.
 */
export function newer(held: number | undefined, read: number | undefined): boolean {
  return held === undefined || read === undefined || read > held;
}

const byId = <T extends { id: string }>(a: T, b: T) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A port's fixed IPs on its network (`network|ip`), for finding a port whose address a new one took. */
function addressKeys(p: NeutronPort): string[] {
  return (p.fixed_ips ?? []).flatMap((f) => (f.ip_address ? [`${p.network_id ?? ""}|${f.ip_address}`] : []));
}

function migratingTo(p: NeutronPort): string | undefined {
  const v = p["binding:profile"]?.migrating_to;
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** Only bound compute ports can become endpoints; no other port's bindings matter. */
function mayBeEndpoint(p: NeutronPort): boolean {
  return (p.device_owner ?? "").startsWith("compute:") && !!p["binding:host_id"];
}

export function createWatcher(o: WatcherOptions) {
  const now = o.now ?? Date.now;
  const neutron = o.neutron;
  let feed: ChangeFeed | undefined = o.feed === "auto" ? undefined : o.feed;
  let ports: Held<NeutronPort> | undefined;
  let groups: Held<NeutronSecurityGroup> = new Map();
  let addressGroups: NeutronAddressGroup[] | undefined;
  let addressGroupsJson = "";
  /** Ports with an inactive binding: their bindings, and the port revision they were read at. */
  const bindings = new Map<string, { revision: number | undefined; list: NeutronBinding[] }>();
  let lastFull = 0;
  /** Set by invalidate(): the next poll is a full listing (what is held is kept as the "before" of bindings). */
  let mustList = true;
  /** A notice overflowed: a full listing when overflowFullMinMs allows. */
  let overflowed = false;
  /** When an overflow last made a full listing. */
  let lastOverflowFull = -Infinity;
  let lastIdCheck = 0;
  /** When the change feed (or a full listing) last ran. */
  let lastFeed = 0;
  /** Neutron's time (ms) the next changed_since asks from. */
  let cursor = 0;

  const input = (): TranslateInput => {
    const b = new Map<string, NeutronBinding[]>();
    for (const [id, v] of bindings) b.set(id, v.list);
    const i: TranslateInput = { ports: [...ports!.values()], securityGroups: [...groups.values()], bindings: b };
    if (addressGroups !== undefined) i.addressGroups = addressGroups;
    return i;
  };

  /**
   * The cursor for reads whose first request was sent at local time
   * `firstRequestAt`: Neutron's clock as of its last answer (ours when it
   * sent no Date) moved back by everything that ran since then. The Date of
   * the last answer is no later than Neutron's clock now, so this is no
   * later than Neutron's clock when the first request went out.
   */
  const cursorBefore = (firstRequestAt: number) => (neutron.serverTime() ?? now()) - (now() - firstRequestAt) - CURSOR_LAG_MS;

  /** Reads the bindings of the ports that need it (see the header); returns how many were read. */
  async function refreshBindings(changed: NeutronPort[], previous: Held<NeutronPort> | undefined): Promise<number> {
    let reads = 0;
    for (const p of changed) {
      const held = bindings.get(p.id);
      const prev = previous?.get(p.id);
      const moved = prev !== undefined && revisionMoved(prev.revision_number, p.revision_number);
      const need = mayBeEndpoint(p) && (migratingTo(p) !== undefined || moved || (held !== undefined && revisionMoved(held.revision, p.revision_number)));
      if (!need) {
        if (!mayBeEndpoint(p) || (held && revisionMoved(held.revision, p.revision_number))) bindings.delete(p.id);
        continue;
      }
      reads++;
      const list = await neutron.listBindings(p.id);
      if (list && list.some((b) => b.status !== "ACTIVE")) bindings.set(p.id, { revision: p.revision_number, list });
      else bindings.delete(p.id);
    }
    return reads;
  }

  async function readAddressGroups(): Promise<boolean> {
    const ag = await neutron.listAddressGroups();
    const json = JSON.stringify(ag === undefined ? null : [...ag].sort(byId));
    const changed = json !== addressGroupsJson;
    addressGroups = ag;
    addressGroupsJson = json;
    return changed;
  }

  async function full(): Promise<PollResult> {
    if (feed === undefined) feed = (await neutron.supportsChangedSince()) ? "changed-since" : "revisions";
    const started = now();
    const snap = await neutron.snapshot();
    // Bindings first, against what was held before: if reading them fails,
    // the next (full) poll still sees these ports' revisions as moved.
    const bindingReads = await refreshBindings(snap.ports, ports);
    ports = new Map(snap.ports.map((p) => [p.id, p]));
    groups = new Map(snap.securityGroups.map((g) => [g.id, g]));
    addressGroups = snap.addressGroups;
    addressGroupsJson = JSON.stringify(snap.addressGroups === undefined ? null : [...snap.addressGroups].sort(byId));
    for (const id of [...bindings.keys()]) if (!ports.has(id)) bindings.delete(id);
    // Everything from the start of the listing on is asked for again: the
    // binding reads above took time too, and a change committed while they
    // ran is in no listing held here.
    cursor = cursorBefore(started);
    lastFull = lastIdCheck = lastFeed = now();
    mustList = false;
    overflowed = false;
    return {
      kind: "full", via: "full", feed, input,
      changed: { ports: snap.ports.length, deletedPorts: 0, groups: snap.securityGroups.length, deletedGroups: 0, addressGroups: true, bindingReads },
    };
  }

  /** The revisions listing of one collection: changed and new objects fetched by id, missing ones deleted. */
  async function revisionsOf<T extends { id: string; revision_number?: number }>(
    key: ChangeCollection, held: Held<T>,
  ): Promise<{ changed: T[]; deleted: string[] }> {
    const revs = await neutron.listRevisions(key);
    const seen = new Set<string>();
    const stale: string[] = [];
    for (const r of revs) {
      seen.add(r.id);
      if (revisionMoved(held.get(r.id)?.revision_number, r.revision_number)) stale.push(r.id);
    }
    const deleted = [...held.keys()].filter((id) => !seen.has(id));
    const fetched = stale.length ? await (neutron.getByIds as unknown as (k: ChangeCollection, ids: string[]) => Promise<T[]>)(key, stale) : [];
    // Listed, then deleted before it could be fetched: gone.
    const got = new Set(fetched.map((x) => x.id));
    for (const id of stale) if (!got.has(id) && held.has(id)) deleted.push(id);
    return { changed: fetched, deleted };
  }

  function changedOnly<T extends { id: string; revision_number?: number }>(list: T[], held: Held<T>): T[] {
    return list.filter((x) => {
      const h = held.get(x.id);
      return h === undefined || revisionMoved(h.revision_number, x.revision_number);
    });
  }

  async function incremental(): Promise<PollResult> {
    lastFeed = now();
    const held = ports!;
    let changedPorts: NeutronPort[];
    let changedGroups: NeutronSecurityGroup[];
    let deletedPorts: string[] = [];
    let deletedGroups: string[] = [];
    if (feed === "changed-since") {
      const since = neutronTime(cursor);
      // The next cursor precedes the first listing below (a listing of many
      // pages takes time: a change to a page already read is in the next one).
      const started = now();
      changedPorts = changedOnly(await neutron.listChangedSince("ports", since), held);
      changedGroups = changedOnly(await neutron.listChangedSince("security_groups", since), groups);
      cursor = cursorBefore(started);
      const appeared = changedPorts.some((p) => !held.has(p.id));
      if (appeared || now() - lastIdCheck >= o.deletionCheckMs) {
        // Deletions (and, as a bonus, anything the cursor missed).
        const p = await revisionsOf("ports", held);
        const g = await revisionsOf("security_groups", groups);
        const byId = new Map(changedPorts.map((x) => [x.id, x]));
        for (const x of p.changed) byId.set(x.id, x);
        changedPorts = [...byId.values()];
        const gById = new Map(changedGroups.map((x) => [x.id, x]));
        for (const x of g.changed) gById.set(x.id, x);
        changedGroups = [...gById.values()];
        deletedPorts = p.deleted;
        deletedGroups = g.deleted;
        lastIdCheck = now();
      }
    } else {
      const p = await revisionsOf("ports", held);
      const g = await revisionsOf("security_groups", groups);
      changedPorts = p.changed;
      deletedPorts = p.deleted;
      changedGroups = g.changed;
      deletedGroups = g.deleted;
    }
    const agChanged = await readAddressGroups();
    return commit({ changedPorts, deletedPorts, changedGroups, deletedGroups, agChanged }, "feed");
  }

  /**
   * Takes what a feed or by-id poll found into what is held, and says what
   * changed. Bindings first, before anything held changes (a failure leaves
   * the revisions moved for the next poll, or makes it a full one), against
   * the versions before this poll — of the changed ports only: an idle poll
   * must not copy the whole cloud.
   */
  async function commit(c: { changedPorts: NeutronPort[]; deletedPorts: string[]; changedGroups: NeutronSecurityGroup[]; deletedGroups: string[]; agChanged: boolean }, via: "feed" | "by-id"): Promise<PollResult> {
    const held = ports!;
    const { changedPorts, deletedPorts, changedGroups, deletedGroups, agChanged } = c;
    const previous: Held<NeutronPort> = new Map();
    for (const x of changedPorts) {
      const h = held.get(x.id);
      if (h) previous.set(x.id, h);
    }
    const bindingReads = await refreshBindings(changedPorts, previous);
    for (const x of changedPorts) held.set(x.id, x);
    for (const id of deletedPorts) {
      held.delete(id);
      bindings.delete(id);
    }
    for (const x of changedGroups) groups.set(x.id, x);
    for (const id of deletedGroups) groups.delete(id);
    const any = changedPorts.length + deletedPorts.length + changedGroups.length + deletedGroups.length > 0 || agChanged;
    return {
      kind: any ? "changes" : "idle", via, feed: feed!, input,
      changed: { ports: changedPorts.length, deletedPorts: deletedPorts.length, groups: changedGroups.length, deletedGroups: deletedGroups.length, addressGroups: agChanged, bindingReads },
    };
  }

  /**
   * The objects the notices named, fetched by id: taken when newer than what
   * is held, dropped when Neutron no longer has them. Nothing is listed.
   */
  async function fetchByIds(b: PendingBatch): Promise<PollResult> {
    const held = ports!;
    const askedPorts = [...b.ports];
    const got = askedPorts.length ? await neutron.getByIds("ports", askedPorts) : [];
    // A new port may have taken the address of a deleted port whose own
    // notice is still on its way (another neutron-server worker sent it):
    // read the held ports with its address on its network again.
    const taken = new Set(got.filter((p) => !held.has(p.id)).flatMap(addressKeys));
    const asked = new Set(askedPorts);
    const recheck = taken.size ? [...held.values()].filter((p) => !asked.has(p.id) && addressKeys(p).some((k) => taken.has(k))).map((p) => p.id) : [];
    if (recheck.length) got.push(...await neutron.getByIds("ports", recheck));
    const gotPorts = new Set(got.map((p) => p.id));
    const deletedPorts = [...askedPorts, ...recheck].filter((id) => held.has(id) && !gotPorts.has(id));
    const changedPorts = got.filter((p) => newer(held.get(p.id)?.revision_number, p.revision_number));

    const askedGroups = [...b.groups];
    const gotGroups = askedGroups.length ? await neutron.getByIds("security_groups", askedGroups) : [];
    const seenGroups = new Set(gotGroups.map((g) => g.id));
    const deletedGroups = askedGroups.filter((id) => groups.has(id) && !seenGroups.has(id));
    const changedGroups = gotGroups.filter((g) => newer(groups.get(g.id)?.revision_number, g.revision_number));

    // Address groups carry no revision number worth trusting across
    // versions: compared whole, as the listing does.
    let agChanged = false;
    if (b.addressGroups.size && addressGroups !== undefined) {
      const ids = [...b.addressGroups];
      const fetched = await neutron.getByIds("address_groups", ids);
      const next = new Map(addressGroups.map((a) => [a.id, a]));
      for (const id of ids) next.delete(id);
      for (const a of fetched) next.set(a.id, a);
      const list = [...next.values()].sort(byId);
      const json = JSON.stringify(list);
      agChanged = json !== addressGroupsJson;
      addressGroups = list;
      addressGroupsJson = json;
    }

    return commit({ changedPorts, deletedPorts, changedGroups, deletedGroups, agChanged }, "by-id");
  }

  /** A by-id poll followed by the feed's, as one result (the held picture is the one both updated). */
  function both(a: PollResult, b: PollResult): PollResult {
    return {
      kind: a.kind === "idle" && b.kind === "idle" ? "idle" : "changes", via: "feed", feed: b.feed, input,
      changed: {
        ports: a.changed.ports + b.changed.ports, deletedPorts: a.changed.deletedPorts + b.changed.deletedPorts,
        groups: a.changed.groups + b.changed.groups, deletedGroups: a.changed.deletedGroups + b.changed.deletedGroups,
        addressGroups: a.changed.addressGroups || b.changed.addressGroups, bindingReads: a.changed.bindingReads + b.changed.bindingReads,
      },
    };
  }

  return {
    /**
     * One poll: a full listing when due (after invalidate, or when the
     * notices overflowed), else the objects the notices named fetched by id
     * when that is all that is pending (and the change feed after them when
     * it has not run for `feedMs`), else the change feed.
     */
    async poll(pending?: PendingBatch): Promise<PollResult> {
      if (pending?.full) overflowed = true;
      if (mustList || ports === undefined || now() - lastFull >= o.resyncMs) return full();
      if (overflowed) {
        // The first at once (notices were lost: list everything); one more
        // within overflowFullMinMs of it waits, the feed's poll meanwhile.
        if (now() - lastOverflowFull < (o.overflowFullMinMs ?? 10_000)) return incremental();
        lastOverflowFull = now();
        return full();
      }
      // Address groups named while the extension was missing: the feed's poll lists them.
      if (pending && !pending.poll && (pending.addressGroups.size === 0 || addressGroups !== undefined)) {
        const named = await fetchByIds(pending);
        // A busy cloud notices something every poll: the feed still runs at
        // its interval, for what no notice named (a notice lost between
        // commit and send, a change no hook reports).
        if (o.feedMs === undefined || now() - lastFeed < o.feedMs) return named;
        return both(named, await incremental());
      }
      return incremental();
    },
    /** After a failure: the next poll reads everything again (what is held may be half-updated). */
    invalidate(): void {
      mustList = true;
    },
    feed: () => feed,
  };
}

export type Watcher = ReturnType<typeof createWatcher>;
