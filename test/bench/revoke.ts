// revoke (issue #21 item 6): what ending revoked connections costs on one
// host (DESIGN §6.14), with `endpoints` endpoints (IPv4, ~100 profiles ×
// 10 rules as in the density section, random profile lists) and
// `conntrack` conntrack entries in the driver's namespace (inserted in one
// `conntrack -R` batch, ESTABLISHED/ASSURED, spread over the host's endpoint
// addresses, half of them opened by the workload and half towards it).
//
// Three fresh namespaces per topology: the raw floor (the controller's
// updates as ipset restore / iptables-restore --noflush, as in the density
// section), the driver with the feature on, the driver with it off
// (endRevokedConnections=false: a BridgeLayer without epochs, no
// RevocationWatch). Both drivers' namespaces hold the conntrack entries.
// Each driver sample is the driver's own apply path as services/driver/driver.ts
// runs it: the BridgeLayer's take(), the RevocationWatch's verdict (an epoch
// advanced in the same restore when it may revoke), buildPlanInput,
// dataplane.applyFrom, then `conntrack -D` (kernel/conntrack.ts) for
// addresses that left an endpoint — wall time of all of it.
//
// Rows (p50 over the samples, raw floor and on/off ratios beside):
//   rule_removed      revokes, one endpoint: a rule removed from a profile
//                     only that endpoint has (its class of its own)
//   endpoint_deleted  revokes, one endpoint: the endpoint deleted; its
//                     addresses' conntrack entries are deleted (stage
//                     "conntrack", also given alone)
//   added             revokes nothing: an endpoint added to a class already
//                     on the host (profile "pweb", which every 50th endpoint
//                     has; no deny rule names its tag)
//   tag_member        revokes nothing: an endpoint of another host joins a
//                     tag that this host's profiles use only in an allow rule
//   added_deny_tag    an endpoint added with the profile list of one on the
//                     host whose tag some deny rule names: the watch takes
//                     the new member of a set a DROP rule matches as a
//                     possible revocation (a connection from that address
//                     admitted before would now be denied) and advances
//                     the epoch; the cost when it does
// Each row says how many of its samples advanced the epoch (revoking rows
// and added_deny_tag: all; added, tag_member: none) and, for
// endpoint_deleted, how many entries went, how many `conntrack -D` runs
// failed (counted as the driver does, the apply standing) and how many
// entries of the deleted addresses were left.
//
// Established traffic: from the programmed filter table of the on and off
// namespaces (iptables-save), how many rules an established packet of a
// connection judged in the current epoch is looked up against, FORWARD to
// its ACCEPT (ct-path.ts), per kind of packet; `extra` = on − off.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CalcGraph, HostUpdate } from "../../services/calc/index.js";
import { endpointKeyString, type Endpoint, type Profile } from "../../services/model/index.js";
import type { Backend } from "../../services/driver/kernel/backend.js";
import { iptablesCommands } from "../../services/driver/kernel/backend.js";
import { createExecRunner, type CommandRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane, type Dataplane } from "../../services/driver/apply/dataplane.js";
import { BENCH_IPSET_SESSION } from "./session-flag.js";
import { emptyFamilyState } from "../../services/driver/kernel/kernel-state.js";
import { planApply } from "../../services/driver/plan/plan.js";
import { buildPlanInput } from "../../services/driver/plan/plan-input.js";
import { RevocationState } from "../../services/driver/apply/revocation-state.js";
import { BridgeLayer } from "../../services/driver/plan/bridge-twins.js";
import { CT_EPOCH_SHIFT } from "../../services/driver/plan/revocation.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { renderFlowLogChains } from "../../services/driver/flows/flow-log-chains.js";
import { FLOW_DEFAULTS } from "../../services/driver/flows/flow-reporter.js";
import { createLogger } from "../../services/runtime/logger.js";
import { applyRawChange, createHostFeed, rawBytes, type Topology } from "./host-feed.js";
import { withNamespaces } from "./density.js";
import { chainsOf, walk, type Packet } from "./ct-path.js";
import { mulberry32 } from "../support/prng.js";
import { genEndpoint, genProfiles } from "./model-gen.js";
import { percentile, round } from "./stats.js";

const HOST = "hv0";
const PREFIXES = ["tap"];
const FAMILIES = [4] as const;
const PROFILES = 100;
export const REVOKE_KINDS = ["rule_removed", "endpoint_deleted", "added", "tag_member", "added_deny_tag"] as const;
type Kind = (typeof REVOKE_KINDS)[number];

/** One driver of the host, as driver.ts builds it, with the feature on or off. */
interface Drv {
  state: DesiredState;
  layer: BridgeLayer;
  dp: Dataplane;
  runner: CommandRunner;
  /** The driver's own revocation state (apply/revocation-state.ts); undefined with the feature off. */
  rev: RevocationState | undefined;
  /** Counted by the revocation state's stats, per apply. */
  count: { bumped: boolean; deleted: number; failed: boolean };
}

function makeDriver(on: boolean, snapshot: readonly HostUpdate[], ns: string, backend: Backend, ports: ReadonlyMap<string, string> | undefined): Drv {
  const state = new DesiredState();
  state.apply(snapshot);
  const runner = createExecRunner({ netns: ns });
  const logger = createLogger({ name: "bench", level: "silent" });
  const count = { bumped: false, deleted: 0, failed: false };
  // No zone chains on this host: a routed address, or a bridge without a zone: every zone (driver.ts).
  const rev = on
    ? new RevocationState({
      families: FAMILIES, prefixes: PREFIXES, runner, logger, zoneOf: () => undefined, onApplyDue: () => undefined,
      stats: { epochAdvanced: () => { count.bumped = true; }, connectionsDeleted: (n) => { count.deleted += n; }, connectionsDeleteFailed: () => { count.failed = true; } },
    })
    : undefined;
  const layer = new BridgeLayer({ prefixes: PREFIXES, families: FAMILIES, extraChains: renderFlowLogChains(FLOW_DEFAULTS, 4), epochs: rev?.epochs });
  rev?.attach(layer);
  if (ports) layer.setTopology({ physdev: true, ports: new Map(ports) });
  const dp = createDataplane({ runner, backend, families: [...FAMILIES], logger, ipsetSession: BENCH_IPSET_SESSION });
  return { state, layer, dp, runner, rev, count };
}

/**
 * One apply of the driver, as driver.ts's apply loop makes it (take():
 * layer, revocation state, plan input; then the dataplane; then what the
 * revocation state does before the apply is reported). Returns its wall
 * time (the driver's time until it can report), the conntrack stage,
 * whether an epoch advanced, and the entries deleted — background
 * deletions included, waited for after the timing so that samples do not
 * overlap.
 */
async function driverApply(d: Drv): Promise<{ ms: number; conntrackMs: number; bumped: boolean; deleted: number; failed: boolean; ipsetMs: number; iptablesMs: number }> {
  d.count.bumped = false;
  d.count.deleted = 0;
  d.count.failed = false;
  const t0 = performance.now();
  const r = await d.dp.applyFrom(() => {
    const v = d.layer.take(d.state);
    const changes = d.rev ? d.rev.take({ chains: d.state.chains, sets: v.sets, endpoints: d.state.endpoints }, v.changes, 0) : v.changes;
    return { input: buildPlanInput({ base: d.layer.baseChains(), families: FAMILIES, desired: { chains: d.state.chains, sets: v.sets }, driverSets: v.sets }), changes };
  });
  let conntrackMs = 0;
  if (d.rev?.pending()) {
    try {
      conntrackMs = await d.rev.afterApply();
    } catch (err) {
      if (process.env.BENCH_DEBUG) process.stderr.write(`bench: conntrack -D failed: ${(err as Error).message}\n`);
    }
  }
  const ms = performance.now() - t0;
  await d.rev?.settled();
  // Where the time went: the ipset stage (session or restores), the iptables restores (the longer family).
  const ipsetMs = r.stages.ipset ?? 0;
  const iptablesMs = Math.max(r.stages.ipv4 ?? 0, r.stages.ipv6 ?? 0);
  return { ms, conntrackMs, bumped: d.count.bumped, deleted: d.count.deleted, failed: d.count.failed, ipsetMs, iptablesMs };
}

const addressOf = (e: Endpoint) => e.ipv4Nets[0]!.replace(/\/32$/, "");

/** `count` ESTABLISHED/ASSURED TCP entries over the endpoints' addresses, as `conntrack -R` input. */
function conntrackBatch(endpoints: readonly Endpoint[], count: number): string {
  const lines: string[] = [];
  const n = endpoints.length;
  for (let i = 0; i < count; i++) {
    const ep = addressOf(endpoints[i % n]!);
    const q = Math.floor(i / n);
    const peer = `${q % 2 ? "198.51.100" : "203.0.113"}.${(i % 250) + 1}`;
    // Unique per (endpoint, q): q tells the connection apart.
    const [s, d, dport] = q % 2 ? [peer, ep, 443] : [ep, peer, 80];
    lines.push(`-I -p tcp -s ${s} -d ${d} --sport ${1024 + q} --dport ${dport} --state ESTABLISHED -t 3600 -u ASSURED,SEEN_REPLY`);
  }
  return `${lines.join("\n")}\n`;
}

async function conntrackCount(run: CommandRunner): Promise<number> {
  const out = await run.run("conntrack", ["-C"]);
  return Number(out.stdout.trim());
}

/** The kinds of established packet this topology carries, by name. */
function packets(topology: Topology, a: string, b: string): Record<string, Omit<Packet, "ctmark">> {
  const est = { ctstate: "ESTABLISHED", proto: "tcp", tcpFlags: ["ACK"] } as const;
  if (topology === "routed") {
    return {
      from_workload: { ...est, in: a, out: "eth0", ctdir: "ORIGINAL" },
      to_workload: { ...est, in: "eth0", out: a, ctdir: "REPLY" },
      between_workloads: { ...est, in: a, out: b, ctdir: "ORIGINAL" },
    };
  }
  // Bridged: the bridge is -i/-o, the taps show as physdev (DESIGN §6.3).
  return {
    from_workload: { ...est, in: "brq0", out: "brq0", physIn: a, physOut: "eth0", bridged: true, ctdir: "ORIGINAL" },
    to_workload: { ...est, in: "brq0", out: "brq0", physIn: "eth0", physOut: a, bridged: true, ctdir: "REPLY" },
    between_workloads: { ...est, in: "brq0", out: "brq0", physIn: a, physOut: b, bridged: true, ctdir: "ORIGINAL" },
    from_workload_routed: { ...est, in: "brq0", out: "eth0", physIn: a, ctdir: "ORIGINAL" },
  };
}

export interface RevokeRow {
  topology: Topology;
  backend: Backend;
  endpoints: number;
  conntrack_entries: number;
  samples: number;
  rules: number;
  [figure: string]: unknown;
}

async function revokeOne(o: { endpoints: number; conntrack: number; samples: number; backend: Backend; topology: Topology }): Promise<RevokeRow> {
  const t0 = performance.now();
  const { endpoints: size, samples, backend, topology } = o;
  const rand = mulberry32(42);
  const profiles: Profile[] = genProfiles(PROFILES, 10, rand);
  // A profile of one endpoint's own (rule_removed revokes on one endpoint
  // only), and a tag used on this host only by an allow rule (tag_member).
  const own = { ...genProfiles(1, Math.max(10, samples), mulberry32(7))[0]!, id: "pown", tags: ["town"] };
  const tagged: Profile = { id: "ptag", tags: ["tallow"], inboundRules: [], outboundRules: [{ action: "allow", match: {}, negated: {} }], labels: {} };
  const user: Profile = {
    id: "puse", tags: ["tuse"], labels: {}, outboundRules: [{ action: "allow", match: {}, negated: {} }],
    inboundRules: [{ action: "allow", match: { protocol: "tcp", srcTag: "tallow", dstPorts: [{ first: 8080, last: 8080 }] }, negated: {} }],
  };
  const web: Profile = {
    id: "pweb", tags: ["tweb"], labels: {}, outboundRules: [{ action: "allow", match: {}, negated: {} }],
    inboundRules: [{ action: "allow", match: { protocol: "tcp", dstPorts: [{ first: 80, last: 80 }] }, negated: {} }],
  };
  profiles.push(own, tagged, user, web);
  // Tags some deny rule names (added_deny_tag joins one of them).
  const deniedTags = new Set(profiles.flatMap((p) => p.inboundRules.flatMap((r) => (r.action === "deny" && r.match.srcTag ? [r.match.srcTag] : []))));
  const endpoints = Array.from({ length: size }, (_, i) => genEndpoint(HOST, i, PROFILES, rand));
  endpoints[0] = { ...endpoints[0]!, profileIds: [...endpoints[0]!.profileIds, "pown"] };
  endpoints[1] = { ...endpoints[1]!, profileIds: [...endpoints[1]!.profileIds, "puse"] };
  for (let i = 4; i < size; i += 50) endpoints[i] = { ...endpoints[i]!, profileIds: ["pweb"] };
  const namedByDeny = endpoints.filter((e) => e.profileIds.some((id) => profiles.find((p) => p.id === id)!.tags.some((t) => deniedTags.has(t))));
  if (!namedByDeny.length) throw new Error("bench: no endpoint has a tag a deny rule names");
  const remote = (k: number) => ({ ...genEndpoint("hv1", k, PROFILES, rand), profileIds: ["ptag"] });
  const feed = createHostFeed(profiles, [...endpoints, remote(0)], { host: HOST, topology });
  const want = feed.input();
  const rules = [...want.chains.values()].reduce((n, c) => n + c.rules.length, 0);
  const restoreCmd = iptablesCommands(backend, 4).restore;
  const tag = `prv${process.pid.toString(36)}${topology[0]}${backend[0]}${size.toString(36)}`;
  const [nsRaw, nsOn, nsOff] = [`${tag}r`, `${tag}n`, `${tag}f`];

  return withNamespaces([nsRaw, nsOn, nsOff], async () => {
    const raw = createExecRunner({ netns: nsRaw });
    const ports = topology === "bridged" ? feed.ports : undefined;
    const on = makeDriver(true, feed.snapshot, nsOn, backend, ports);
    const off = makeDriver(false, feed.snapshot, nsOff, backend, ports);

    // The entries, in both drivers' namespaces (the host's own conntrack is never touched).
    const dir = mkdtempSync(join(tmpdir(), "palisade-bench-ct-"));
    let fillS: number;
    try {
      const file = join(dir, "entries");
      writeFileSync(file, conntrackBatch(endpoints, o.conntrack));
      const t = performance.now();
      for (const d of [on, off]) await d.runner.run("conntrack", ["-R", file]);
      fillS = (performance.now() - t) / 1000;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const entries = [await conntrackCount(on.runner), await conntrackCount(off.runner)];
    if (entries.some((n) => n < o.conntrack)) throw new Error(`bench: conntrack holds ${entries.join("/")} entries, not ${o.conntrack}`);

    // First applies (full plans).
    const fullPlan = planApply(want, { families: { 4: emptyFamilyState(), 6: emptyFamilyState() }, sets: new Map() });
    await raw.run("ipset", ["restore"], `${fullPlan.ipsetBefore.join("\n")}\n`);
    await raw.run(restoreCmd, ["--noflush", "--wait", "10"], fullPlan.restore[4]!);
    const firstOn = await driverApply(on);
    const firstOff = await driverApply(off);

    type Times = { on: number[]; off: number[]; raw: number[]; conntrack: number[]; ipset: number[]; iptables: number[]; bumps: number; deleted: number; failures: number; bytes: number };
    const times = Object.fromEntries(REVOKE_KINDS.map((k) => [k, { on: [], off: [], raw: [], conntrack: [], ipset: [], iptables: [], bumps: 0, deleted: 0, failures: 0, bytes: 0 }])) as unknown as Record<Kind, Times>;
    let ownProfile = own;
    const deleted = new Set<number>();
    const changeOf = (kind: Kind, k: number): [(g: CalcGraph) => void, { plug?: string[] }] => {
      if (kind === "rule_removed") {
        ownProfile = { ...ownProfile, inboundRules: ownProfile.inboundRules.slice(0, -1) };
        const p = ownProfile;
        return [(g) => g.upsertProfile(p), {}];
      }
      if (kind === "endpoint_deleted") {
        let i = (k * 53 + 11) % size;
        while (i < 2 || deleted.has(i)) i = (i + 1) % size;
        deleted.add(i);
        const e = endpoints[i]!;
        return [(g) => g.deleteEndpoint(endpointKeyString(e)), {}];
      }
      if (kind === "added" || kind === "added_deny_tag") {
        const lists = kind === "added" ? ["pweb"] : [...namedByDeny[(k * 37) % namedByDeny.length]!.profileIds];
        const e = { ...genEndpoint(HOST, size + k + (kind === "added" ? 0 : samples), PROFILES, rand), profileIds: lists };
        return [(g) => g.upsertEndpoint(e), { plug: [e.name] }];
      }
      const e = remote(k + 1);
      return [(g) => g.upsertEndpoint(e), {}];
    };

    for (const kind of REVOKE_KINDS) {
      for (let k = 0; k < samples; k++) {
        const [fn, opts] = changeOf(kind, k);
        const { updates, raw: text } = feed.change(fn, opts);
        if (!updates.length) throw new Error(`bench: ${kind} sent the host nothing`);
        for (const d of [on, off]) {
          d.state.apply(updates);
          if (ports && opts.plug?.length) d.layer.setTopology({ physdev: true, ports: new Map(ports) });
        }
        const T = times[kind];
        const runs = [
          async () => { const t1 = performance.now(); await applyRawChange(raw, restoreCmd, text); T.raw.push(performance.now() - t1); T.bytes = rawBytes(text); },
          async () => {
            const r = await driverApply(on);
            T.on.push(r.ms); T.conntrack.push(r.conntrackMs); T.deleted += r.deleted; T.ipset.push(r.ipsetMs); T.iptables.push(r.iptablesMs);
            if (r.failed) T.failures++;
            if (r.bumped) T.bumps++;
          },
          async () => { const r = await driverApply(off); T.off.push(r.ms); },
        ];
        // Rotate which goes first, so none always runs on a warmer machine.
        for (let j = 0; j < runs.length; j++) await runs[(j + k) % runs.length]!();
      }
    }

    // Entries of the deleted endpoints' addresses still in the on namespace (0 unless a deletion failed).
    let left = 0;
    for (const i of deleted) {
      for (const dir of ["-s", "-d"]) {
        const out = await on.runner.run("conntrack", ["-L", "-f", "ipv4", dir, addressOf(endpoints[i]!)]);
        left += out.stdout.split("\n").filter((l) => l.trim() !== "").length;
      }
    }

    // Established traffic, walked over what each namespace now holds.
    const save = async (d: Drv) => chainsOf((await d.runner.run(iptablesCommands(backend, 4).save, ["-t", "filter"])).stdout);
    const [chainsOn, chainsOff] = [await save(on), await save(off)];
    const [a, b] = [endpoints[2]!.name, endpoints[3]!.name];
    const established: Record<string, number> = {};
    let extraMax = 0;
    for (const [name, p] of Object.entries(packets(topology, a, b))) {
      // The connection was judged in the current epoch (its mark); off, no mark.
      const wOn = walk(chainsOn, "FORWARD", { ...p, ctmark: (on.rev!.epochs[4]! << CT_EPOCH_SHIFT) >>> 0 });
      const wOff = walk(chainsOff, "FORWARD", { ...p, ctmark: 0 });
      if (wOn.verdict !== "ACCEPT" || wOff.verdict !== "ACCEPT") throw new Error(`bench: established ${name} not accepted (${wOn.verdict}/${wOff.verdict})`);
      Object.assign(established, { [`est_${name}_lookups_on`]: wOn.lookups, [`est_${name}_lookups_off`]: wOff.lookups, [`est_${name}_extra`]: wOn.lookups - wOff.lookups });
      extraMax = Math.max(extraMax, wOn.lookups - wOff.lookups);
    }

    const p50 = (xs: number[]) => percentile([...xs].sort((x, y) => x - y), 50);
    const row: RevokeRow = {
      topology, backend, endpoints: size, conntrack_entries: entries[0]!, samples, rules,
      conntrack_fill_s: round(fillS, 1),
      first_apply_on_ms: round(firstOn.ms, 0), first_apply_off_ms: round(firstOff.ms, 0),
    };
    for (const kind of REVOKE_KINDS) {
      const T = times[kind];
      const [dOn, dOff, r] = [p50(T.on), p50(T.off), p50(T.raw)];
      Object.assign(row, {
        [`${kind}_p50_ms`]: round(dOn, 1), [`${kind}_max_ms`]: round(Math.max(...T.on), 1),
        [`${kind}_ipset_p50_ms`]: round(p50(T.ipset), 1), [`${kind}_iptables_p50_ms`]: round(p50(T.iptables), 1),
        [`${kind}_off_p50_ms`]: round(dOff, 1), [`${kind}_raw_p50_ms`]: round(r, 1),
        [`${kind}_ratio`]: round(dOn / r), [`${kind}_on_off_ratio`]: round(dOn / dOff),
        [`${kind}_epoch_bumps`]: T.bumps, [`${kind}_raw_bytes`]: T.bytes,
      });
      if (kind === "endpoint_deleted") Object.assign(row, { endpoint_deleted_conntrack_p50_ms: round(p50(T.conntrack), 1), endpoint_deleted_conntrack_deleted: T.deleted, endpoint_deleted_conntrack_failures: T.failures, endpoint_deleted_conntrack_left: left });
    }
    Object.assign(row, established, {
      est_extra_max: extraMax,
      est_method: "rules looked up by an ESTABLISHED packet of a current-epoch connection, FORWARD to its ACCEPT, walked over iptables-save of the on and off namespaces (ct-path.ts); extra = on - off",
      seconds: round((performance.now() - t0) / 1000, 1),
    });
    await Promise.all([on.dp.close(), off.dp.close()]);
    return row;
  });
}

export async function benchRevoke(opts: { endpoints: number; conntrack: number; samples: number; backend?: Backend; topologies: readonly Topology[] }) {
  const t0 = performance.now();
  const rows: RevokeRow[] = [];
  for (const topology of opts.topologies) {
    rows.push(await revokeOne({ endpoints: opts.endpoints, conntrack: opts.conntrack, samples: opts.samples, backend: opts.backend ?? "nft", topology }));
    global.gc?.();
  }
  return { rows, target_revocation_ms: 50, seconds: round((performance.now() - t0) / 1000, 0) };
}

/** The figures as lines (the JSON keeps every field). */
export function formatRevoke(r: Awaited<ReturnType<typeof benchRevoke>>): string {
  const out: string[] = [];
  for (const row of r.rows) {
    const { est_method: _m, ...shown } = row;
    out.push(`revoke   ${Object.entries(shown).map(([k, v]) => `${k}=${v}`).join("  ")}`);
  }
  out.push(`revoke   target_revocation_ms=${r.target_revocation_ms}  seconds=${r.seconds}`);
  return `${out.join("\n")}\n`;
}
