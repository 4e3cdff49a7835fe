// A dense host on real iptables and ipset (set-based layout, DESIGN §6.5):
// thousands of endpoints fit in the classification sets (members keyed by
// address: the kernel hashes only the net part of a hash:net,iface member)
// and in the MAC sets, the IPv4 rules do not follow the endpoints, and
// adding, re-addressing and deactivating an endpoint whose profile list is
// in use is programmed by ipset alone — no iptables-restore.
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CalcGraph, DEFAULT_CALC_CONFIG, type HostUpdate } from "../../services/calc/index.js";
import { activeSet, positionSet, profileKey } from "../../services/calc/names.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { CommandRunner } from "../../services/driver/kernel/command-runner.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import type { Endpoint } from "../../services/model/index.js";
import { endpoint, profile } from "../support/model.js";
import { requireBuild, uniqueName } from "../support/binaries.js";

const logger = createLogger({ name: "test", level: "silent" });
const N = 3_000;
const LISTS = [["web"], ["web", "db"], ["db"]];
const ep = (i: number, extra: Record<string, unknown> = {}): Endpoint =>
  endpoint({
    host: "hv1", workload: `w${i}`, id: "e", name: `tap${i.toString(36)}`, profile_ids: LISTS[i % LISTS.length]!, mac: "02:00:00:00:00:01",
    ipv4_nets: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], ipv6_nets: [`2001:db8::${i.toString(16)}`], ...extra,
  });

describe("a dense host (set-based layout)", () => {
  const ns = uniqueName("dense");
  let run: CommandRunner;
  beforeAll(async () => {
    requireBuild();
    await execa("ip", ["netns", "add", ns]);
    run = createExecRunner({ netns: ns });
  });
  afterAll(async () => {
    await execa("ip", ["netns", "del", ns], { reject: false });
  });

  it(`${N} endpoints: programmed, rules independent of the endpoints; endpoint changes by ipset alone`, async () => {
    let pending: HostUpdate[] = [];
    const g = new CalcGraph({ onHostUpdates: (_h, _r, u) => { pending.push(...u); } }, DEFAULT_CALC_CONFIG);
    for (const id of ["web", "db"]) g.upsertProfile(profile({ id, tags: [id], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] }));
    for (let i = 0; i < N; i++) g.upsertEndpoint(ep(i));
    g.flush(1);
    const state = new DesiredState();
    state.apply(g.snapshot("hv1").updates);
    pending = [];
    const base = driverBaseChains(["tap"], [4, 6]);
    const input = () => buildPlanInput({ base, families: [4, 6], desired: state });
    const dp = createDataplane({ runner: run, backend: "nft", families: [4, 6], logger });
    await dp.apply(input(), state.takeChanges());
    const rules = async () => (await run.run("iptables-nft-save", ["-t", "filter"])).stdout.split("\n").filter((l) => l.startsWith("-A ")).length;
    const first = await rules();
    // Every endpoint's (address, interface) is in the kernel.
    const listed = (await run.run("ipset", ["list", "-t"])).stdout;
    const entries = [...listed.matchAll(/Name: (pal4i-active)\n[\s\S]*?Number of entries: (\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
    expect(entries).toBe(N);
    // IPv4: a few dozen rules for 3,000 endpoints (their MACs are in MAC sets; IPv6 MACs are a rule per interface, DESIGN §6.5).
    expect(first).toBeLessThan(200);

    const step = async (change: () => void) => {
      change();
      g.flush(2);
      state.apply(pending);
      pending = [];
      return dp.apply(input(), state.takeChanges());
    };
    // Re-addressed (within a /16 in use: a new /16 is a new MAC set and rule), deactivated, re-activated: set members only.
    for (const [what, r] of [
      ["re-addressed", await step(() => g.upsertEndpoint(ep(7, { ipv4_nets: ["10.0.250.7"] })))],
      ["deactivated", await step(() => g.upsertEndpoint(ep(8, { state: "inactive" })))],
      ["re-activated", await step(() => g.upsertEndpoint(ep(8)))],
      // Added, with a MAC (IPv4) and without one.
      ["added", await step(() => g.upsertEndpoint(ep(N + 1, { ipv6_nets: [], mac: "02:00:00:00:00:02" })))],
      ["added without MAC", await step(() => g.upsertEndpoint({ ...ep(N + 2), mac: undefined }))],
    ] as const) {
      expect({ what, ipv4: r.stages.ipv4 ?? 0, ipv6: r.stages.ipv6 ?? 0, chains: r.chainsWritten }).toEqual({ what, ipv4: 0, ipv6: 0, chains: 0 });
      expect(r.ipsetLines).toBeGreaterThan(0);
    }
    // `ipset test` fails (and so does this line) unless the new member is there.
    await run.run("ipset", ["test", activeSet(4), "10.0.250.7,tap7"]);
    for (const [k, id] of LISTS[7 % LISTS.length]!.entries()) await run.run("ipset", ["test", positionSet(k, profileKey(id), 4), "10.0.250.7,tap7"]);
    expect(await rules()).toBe(first);
  });
});
