// The driver's dataplane against real iptables and ipset inside network
// namespaces (both backends): minimal writes, drift repair, hook position,
// cleanup, and fail-closed start-up with real packets.
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CalcGraph, chainKey, type ChainDef, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { renderBaseChains } from "../../services/driver/plan/base-chains.js";
import { detectBackend, iptablesCommands, type Backend } from "../../services/driver/kernel/backend.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import type { PlanInput } from "../../services/driver/plan/plan.js";
import { createLab, type Lab } from "../lab/lab.js";
import { parseDocuments, type ModelObject } from "../../services/model/index.js";
import { BIN, eventually, requireBuild, uniqueName } from "../support/binaries.js";
import { positionChain } from "../../services/calc/names.js";

const logger = createLogger({ name: "test", level: "silent" });

/** Desired state for host hv1 computed by the real calculation core. */
function desiredFor(objects: ModelObject[]): PlanInput {
  const updates: HostUpdate[] = [];
  const g = new CalcGraph({ onHostUpdates: () => undefined });
  for (const o of objects) (o.kind === "Profile" ? g.upsertProfile(o.profile) : g.upsertEndpoint(o.endpoint));
  g.flush(1);
  updates.push(...g.snapshot("hv1").updates);
  const d = new DesiredState();
  d.apply(updates);
  const chains = new Map<string, ChainDef>();
  for (const f of [4, 6] as const) for (const c of renderBaseChains(["tap"], f)) chains.set(chainKey(f, c.name), c);
  for (const [k, c] of d.chains) chains.set(k, c);
  return { chains, sets: d.sets, families: [4, 6], removeUnwanted: true };
}

const MODEL = parseDocuments([
  { kind: "Profile", id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }], outbound_rules: [{}] },
  { kind: "Profile", id: "app", tags: ["db-user"], inbound_rules: [], outbound_rules: [{}] },
  { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "a", id: "e", name: "tapa", state: "active", ipv4_nets: ["198.18.1.10"], ipv6_nets: ["2001:db8:1::a"], profile_ids: ["db"] },
  { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "b", id: "e", name: "tapb", state: "active", ipv4_nets: ["198.18.1.11"], profile_ids: ["app"] },
]);

/**
 * iptables-save without comments, counters and timestamps, and without
 * tables that hold nothing (only built-in chains with ACCEPT policies): a
 * table the kernel instantiated on first use means the same as no table.
 */
async function saved(lab: Lab, ns: string, backend: Backend): Promise<string> {
  const out = await Promise.all([4, 6].map((f) => lab.exec(ns, iptablesCommands(backend, f as 4 | 6).save, [])));
  const lines = out.join("\n").split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
  const tables: string[][] = [];
  for (const l of lines) (l.startsWith("*") ? tables.push([l]) : tables.at(-1)?.push(l));
  const empty = (t: string[]) => t.every((l) => l.startsWith("*") || l === "COMMIT" || /^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT$/.test(l));
  return tables.filter((t) => !empty(t)).map((t) => t.join("\n")).join("\n");
}

for (const backend of ["nft", "legacy"] as const) {
  describe(`dataplane (${backend})`, () => {
    let lab: Lab;
    let ns: string;
    const prefix = `${uniqueName(`d${backend[0]}`)}-`;

    beforeAll(async () => {
      lab = createLab(prefix);
      ns = (await lab.addHypervisor("hv1")).ns;
      // Something of the host's own that we must leave alone.
      await lab.exec(ns, iptablesCommands(backend, 4).restore, ["--noflush"], "*filter\n:host-own - [0:0]\n-A FORWARD -s 192.0.2.1/32 -j host-own\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n");
    });
    afterAll(async () => { await lab?.destroy(); });

    it("programs, then re-applies with zero writes, then rewrites only what changed", async () => {
      const runner = createExecRunner({ netns: ns });
      const dp = createDataplane({ runner, backend, families: [4, 6], logger });
      const first = await dp.apply(desiredFor(MODEL));
      expect(first.chainsWritten).toBeGreaterThan(10);
      const save = await lab.exec(ns, iptablesCommands(backend, 4).save, ["-t", "filter"]);
      expect(save).toMatch(/-A FORWARD -m comment --comment "?pal:[0-9a-f]{16}"? -j pal-FORWARD/);
      expect(await lab.exec(ns, "ipset", ["list", "pal4t-db-user"])).toContain("198.18.1.11");

      // A fresh dataplane (as after a driver restart) reads the kernel back and adopts it.
      const restarted = createDataplane({ runner, backend, families: [4, 6], logger });
      const again = await restarted.apply(desiredFor(MODEL));
      expect(again).toMatchObject({ chainsWritten: 0, chainsRemoved: 0, ipsetLines: 0, bytesWritten: 0 });

      // One profile changes: only its changed chains are rewritten — the
      // inbound chain and its mirrored twin (DESIGN §6.5), per family it renders into.
      const changed = MODEL.map((o) => (o.kind === "Profile" && o.profile.id === "db"
        ? { ...o, profile: { ...o.profile, inboundRules: [{ ...o.profile.inboundRules[0]!, match: { ...o.profile.inboundRules[0]!.match, dstPorts: [{ first: 5433, last: 5433 }] } }] } }
        : o));
      const inc = await restarted.apply(desiredFor(changed));
      expect(inc.chainsWritten).toBe(4);
      expect(inc.ipsetLines).toBe(0);
    });

    it("repairs drift: flushed chain, flushed set, a foreign rule above the hook", async () => {
      const runner = createExecRunner({ netns: ns });
      const dp = createDataplane({ runner, backend, families: [4, 6], logger });
      const want = desiredFor(MODEL);
      await dp.apply(want);
      expect(await dp.detectDrift()).toBe(false);
      await lab.exec(ns, backend === "nft" ? "iptables-nft" : "iptables-legacy", ["-F", positionChain("to", 0)]);
      await lab.exec(ns, "ipset", ["flush", "pal4t-db-user"]);
      await lab.exec(ns, backend === "nft" ? "iptables-nft" : "iptables-legacy", ["-I", "FORWARD", "1", "-s", "192.0.2.2", "-j", "ACCEPT"]);
      // A foreign rule slipped into one of our chains (even at its end).
      await lab.exec(ns, backend === "nft" ? "iptables-nft" : "iptables-legacy", ["-A", positionChain("from", 0), "-j", "ACCEPT"]);
      expect(await dp.detectDrift()).toBe(true);
      const fix = await dp.apply(want);
      expect(fix.chainsWritten).toBe(2);
      expect(await lab.exec(ns, backend === "nft" ? "iptables-nft" : "iptables-legacy", ["-S", positionChain("from", 0)])).not.toMatch(/-j ACCEPT$/m);
      expect(await dp.detectDrift()).toBe(false);
      const fwd = (await lab.exec(ns, backend === "nft" ? "iptables-nft" : "iptables-legacy", ["-S", "FORWARD"])).split("\n");
      expect(fwd[1]).toContain("-j pal-FORWARD");
      expect(fwd.join("\n")).toContain("192.0.2.2"); // the foreign rule stays, below our hook
      expect(await lab.exec(ns, "ipset", ["list", "pal4t-db-user"])).toContain("198.18.1.11");
    });

    it("replaces a leftover set of another type that our chains still reference", async () => {
      const fresh = (await createLab(`${prefix}t`).addHypervisor("y")).ns;
      try {
        const restore = iptablesCommands(backend, 4).restore;
        // As an older, incompatible driver might have left it: a hash:ip set in use.
        await lab.exec(fresh, "ipset", ["create", "pal4t-db-user", "hash:ip"]);
        await lab.exec(fresh, "ipset", ["add", "pal4t-db-user", "198.18.9.9"]);
        await lab.exec(fresh, restore, ["--noflush"], "*filter\n:pal-pi-db - [0:0]\n-A pal-pi-db -m set --match-set pal4t-db-user src -j ACCEPT\nCOMMIT\n");
        const dp = createDataplane({ runner: createExecRunner({ netns: fresh }), backend, families: [4, 6], logger });
        await dp.apply(desiredFor(MODEL));
        const set = await lab.exec(fresh, "ipset", ["list", "pal4t-db-user"]);
        expect(set).toContain("Type: hash:net");
        expect(set).toContain("198.18.1.11");
        expect(set).not.toContain("198.18.9.9");
        expect(await dp.detectDrift()).toBe(false);
      } finally {
        await execa("ip", ["netns", "del", fresh], { reject: false });
      }
    });

    it("--cleanup leaves iptables-save as it was before Palisade", async () => {
      const fresh = (await createLab(`${prefix}c`).addHypervisor("x")).ns;
      try {
        await lab.exec(fresh, iptablesCommands(backend, 4).restore, ["--noflush"], "*filter\n:host-own - [0:0]\n-A FORWARD -s 192.0.2.1/32 -j host-own\nCOMMIT\n");
        const before = await saved(lab, fresh, backend);
        const dp = createDataplane({ runner: createExecRunner({ netns: fresh }), backend, families: [4, 6], logger });
        await dp.apply(desiredFor(MODEL));
        expect(await saved(lab, fresh, backend)).not.toBe(before);
        const r = await execa("ip", ["netns", "exec", fresh, process.execPath, BIN.driver, "--cleanup", "--iptables-backend", backend], { reject: false });
        expect(r.exitCode, String(r.stderr)).toBe(0);
        expect(await saved(lab, fresh, backend)).toBe(before);
        expect(await lab.exec(fresh, "ipset", ["list", "-n"])).not.toMatch(/^pal/m);
      } finally {
        await execa("ip", ["netns", "del", fresh], { reject: false });
      }
    });
  });
}

describe("iptables backend detection", () => {
  it("follows what the host already uses: legacy rules -> legacy, nft rules -> nft, ours win", async () => {
    const lab = createLab(`${uniqueName("bk")}-`);
    try {
      const [a, b, c] = [(await lab.addHypervisor("a")).ns, (await lab.addHypervisor("b")).ns, (await lab.addHypervisor("c")).ns];
      await lab.exec(a, "iptables-legacy", ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]);
      await lab.exec(b, "iptables-nft", ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]);
      // c: nft has more rules, but legacy holds a previous driver's chains: adopt those.
      for (const port of ["1", "2", "3"]) await lab.exec(c, "iptables-nft", ["-A", "INPUT", "-p", "tcp", "--dport", port, "-j", "ACCEPT"]);
      await lab.exec(c, "iptables-legacy", ["-N", "pal-FORWARD"]);
      expect(await detectBackend(createExecRunner({ netns: a }))).toBe("legacy");
      expect(await detectBackend(createExecRunner({ netns: b }))).toBe("nft");
      expect(await detectBackend(createExecRunner({ netns: c }))).toBe("legacy");
    } finally {
      await lab.destroy();
    }
  });
});

describe("driver start-up", () => {
  let lab: Lab;
  let firstDriver: ReturnType<Lab["spawnIn"]> | undefined;
  beforeAll(async () => {
    requireBuild();
    lab = createLab(`${uniqueName("fc")}-`);
    await lab.addHypervisor("hv1");
    await lab.addWorkload("hv1", { name: "a", iface: "tapfa", host: 10 });
    await lab.addWorkload("hv1", { name: "b", iface: "tapfb", host: 11 });
    await lab.listen("a", [80]);
  });
  afterAll(async () => { await lab?.destroy(); });

  it("drops workload traffic before its first complete state (and not before it started)", async () => {
    // Baseline: without a driver the lab forwards, so the check below can fail.
    expect(await lab.probeTcp("b", "a", 80)).toBe("open");
    const ns = lab.hypervisors.get("hv1")!.ns;
    firstDriver = lab.spawnIn(ns, process.execPath, [BIN.driver, "--insecure", "--controller", "unix:/nonexistent/palisade.sock", "--hostname", "hv1"]);
    await eventually(async () => (await lab.probeTcp("b", "a", 80, { timeoutMs: 500 })) === "timeout", { what: "fail closed", timeoutMs: 15_000 });
    // Non-workload traffic of the host is untouched: nothing but pal-* chains and the hooks.
    const save = await lab.exec(ns, "iptables-save", ["-t", "filter"]);
    const foreign = save.split("\n").filter((l) => l.startsWith("-A ") && !/^-A (pal-|FORWARD .*pal-FORWARD|INPUT .*pal-INPUT)/.test(l));
    expect(foreign).toEqual([]);
  });

  it("does not adopt a flushed leftover entry chain: drops until its first complete state", async () => {
    const ns = lab.hypervisors.get("hv1")!.ns;
    // Stop the driver of the previous test (rules stay), then flush the entry
    // chains as a careless operator might: pal-FORWARD now falls through to ACCEPT.
    firstDriver!.kill("SIGTERM");
    expect((await firstDriver!).exitCode).toBe(0);
    await lab.exec(ns, "iptables", ["-F", "pal-from-wl-dispatch"]);
    await lab.exec(ns, "iptables", ["-F", "pal-to-wl-dispatch"]);
    expect(await lab.probeTcp("b", "a", 80)).toBe("open"); // the hole a naive adoption would keep
    lab.spawnIn(ns, process.execPath, [BIN.driver, "--insecure", "--controller", "unix:/nonexistent/palisade2.sock", "--hostname", "hv1"]);
    await eventually(async () => (await lab.probeTcp("b", "a", 80, { timeoutMs: 500 })) === "timeout", { what: "fail closed again", timeoutMs: 15_000 });
  });
});
