// What the calculation graph asks of one host's dataplane layout (DESIGN
// §7.4). The graph keeps what hosts share — profiles, their rendered chains,
// tag sets and reference counts — and hands each host's own state (where its
// endpoints sit, its position sets and trees, its MAC sets, its chains)
// to one HostLayout object, which it calls only through this interface.
import type { Endpoint, IpVersion } from "../model/index.js";
import type { ChainDef, HostUpdate } from "./desired-state.js";

/** Where a host layout's changes go. */
export interface HostOutput {
  /** One update for the host's driver (coalesced by the graph). */
  emit(u: HostUpdate): void;
  /** Something is left to render once, at this batch's flush (renderDirty). */
  touch(): void;
}

/** A set the layout owns on its host, as a snapshot lists it. */
export interface LocalSet {
  name: string;
  family: IpVersion;
  members: Iterable<string>;
}

export interface HostLayout {
  /**
   * Endpoint `key` is `ep` on interface `name` now, or (`ep` undefined) no
   * longer there: deleted, or renamed to another interface (the graph then
   * places it on the new name too). Emits what the interface's placement
   * changes: set deltas, and chains only when a profile appears at a
   * position or leaves it (or the longest list changes).
   */
  endpointOnInterface(name: string, key: string, ep: Endpoint | undefined): void;
  /** A profile that some endpoint here lists was created or deleted: set members move, chains re-render at flush. */
  profilesChanged(profileId: string): void;
  /** Renders, once per batch, what the batch made stale (position trees, workload chains, MAC tree). */
  renderDirty(): void;
  /** The host's own sets and chains as of the last render, for a snapshot. */
  contents(): { sets: Iterable<LocalSet>; chains: Iterable<ChainDef> };
}
