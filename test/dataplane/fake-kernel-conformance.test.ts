// The fake kernel (test/support/fake-kernel.ts) is held to the real one
// (DESIGN §6.7, §8.2): the same command sequences run on real iptables and
// ipset in a fresh network namespace and on the fake must be accepted or
// refused alike, leave the same chains, rules, sets and members behind after
// every step (a failed ipset restore keeps what it did before the failing
// line; a failed iptables-restore changes nothing), and — on the nft backend,
// whose messages the fake copies — refuse with the same message.
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { CommandError, createExecRunner, type CommandRunner, type CommandSession } from "../../services/driver/kernel/command-runner.js";
import { chainKey, type ChainDef } from "../../services/contract/host-update.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import type { DesiredSet } from "../../services/driver/sync/desired-state.js";
import type { PlanInput } from "../../services/driver/plan/plan.js";
import { driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { createLogger } from "../../services/runtime/logger.js";
import { FakeKernel } from "../support/fake-kernel.js";
import { uniqueName } from "../support/binaries.js";

type Step = { tool: "ipset"; text: string } | { tool: "iptables"; family: 4 | 6; text: string };
const ipset = (...lines: string[]): Step => ({ tool: "ipset", text: `${lines.join("\n")}\n` });
const ipt = (family: 4 | 6, ...lines: string[]): Step => ({ tool: "iptables", family, text: ["*filter", ...lines, "COMMIT", ""].join("\n") });
/** One restore with a raw section, then a filter section. */
const iptRaw = (family: 4 | 6, raw: string[], filter: string[]): Step =>
  ({ tool: "iptables", family, text: ["*raw", ...raw, "COMMIT", "*filter", ...filter, "COMMIT", ""].join("\n") });

const V4 = "hash:net family inet maxelem 1048576";
const V6 = "hash:net family inet6 maxelem 1048576";
const IF4 = "hash:net,iface family inet maxelem 1048576";
const MAC = "bitmap:ip,mac range 198.18.0.0/16";
const LIST = "list:set size 65536";

/** Each case starts from an empty namespace; every step is compared. */
const CASES: Record<string, Step[]> = {
  "a set a rule references cannot be destroyed; once the rule is gone it can": [
    ipset(`create s ${V4}`), ipt(4, ":pal-a - [0:0]", "-A pal-a -m set --match-set s src -j DROP"),
    ipset("destroy s"), ipt(4, ":pal-a - [0:0]"), ipset("destroy s"),
  ],
  "a set referenced from the other family's table cannot be destroyed": [
    ipset(`create s ${V6}`), ipt(6, ":pal-a - [0:0]", "-A pal-a -m set ! --match-set s src -j DROP"), ipset("destroy s"),
  ],
  "a set a list:set holds cannot be destroyed; the list first, then the member": [
    ipset(`create m ${MAC}`, `create l ${LIST}`, "add l m"), ipset("destroy m"), ipset("destroy l", "destroy m"),
  ],
  "a member destroyed before its list: the restore stops there, the lines before it done": [
    ipset(`create m ${MAC}`, `create n bitmap:ip,mac range 198.19.0.0/16`, `create l ${LIST}`, "add l m", "add l n"),
    ipset("del l n -exist", "destroy n", "destroy m", "destroy l"),
  ],
  "a list:set member must exist (with -exist too, and for del)": [
    ipset(`create l ${LIST}`, `create m ${MAC}`), ipset("add l nosuch"), ipset("add l nosuch -exist"), ipset("del l nosuch -exist"),
    ipset("add l m"), ipset("add l m"), ipset("add l m -exist"), ipset("del l m -exist"), ipset("del l m"),
  ],
  "bitmap:ip,mac: a plain address in range, a valid MAC, one MAC per address": [
    ipset(`create m ${MAC}`),
    ipset("add m 198.18.0.1,02:00:00:00:00:01"), ipset("add m 198.19.0.1,02:00:00:00:00:01"), ipset("add m 198.18.0.2,02-00-00-00-00-01"),
    ipset("add m 198.18.0.2,zz:00:00:00:00:01"), ipset("add m 198.18.1.0/24,02:00:00:00:00:01"), ipset("add m 198.18.0.3"),
    ipset("add m 198.18.0.1,02:00:00:00:00:02"), ipset("add m 198.18.0.1,02:00:00:00:00:aa -exist"),
    ipset("del m 198.18.0.1,02:00:00:00:00:ff"), ipset("del m 198.18.0.1,02:00:00:00:00:01"), ipset("del m 198.18.0.1,02:00:00:00:00:01 -exist"),
  ],
  "bitmap:ip,mac: a MAC changed by del then add, and the wrong way round": [
    ipset(`create m ${MAC}`, "add m 198.18.0.1,02:00:00:00:00:01 -exist"),
    ipset("del m 198.18.0.1,02:00:00:00:00:01 -exist", "add m 198.18.0.1,02:00:00:00:00:02 -exist"),
    // The wrong way round: the del (by address) removes the MAC just added, so the address has none.
    ipset("add m 198.18.0.1,02:00:00:00:00:03 -exist", "del m 198.18.0.1,02:00:00:00:00:02 -exist"),
    ipset("del m 198.18.0.1,02:00:00:00:00:03"),
  ],
  "hash:net,iface members are <net>,<iface>": [
    ipset(`create i ${IF4}`), ipset("add i 198.18.0.1,tap1"), ipset("add i 198.18.0.0/24,tap2"), ipset("add i 0.0.0.0/0,tap3"),
    ipset("add i 198.18.0.9"), ipset("add i 198.18.0.9,averyveryverylongname"), ipset("add i 2001:db8::1,tap1"), ipset("add i 198.18.0.1,tap1"),
    ipset("add i 198.18.0.1/32,tap1 -exist"), ipset("del i 198.18.0.7,tap1"), ipset("del i 198.18.0.7,tap1 -exist"),
  ],
  "hash:net members: the set's family, not /0, no second element": [
    ipset(`create s ${V4}`, `create t ${V6}`), ipset("add s 198.18.0.1/32"), ipset("add s 198.18.1.9/24"), ipset("add s 0.0.0.0/0"),
    ipset("add s 198.18.0.1,tap1"), ipset("add s 2001:db8::1"), ipset("add t 2001:db8:0::/48"), ipset("add t 198.18.0.1"),
    ipset("add s 198.18.0.1"), ipset("add s 198.18.0.1 -exist"),
  ],
  "create of an existing set: refused, unless -exist with the same parameters": [
    ipset(`create s ${V4}`), ipset(`create s ${V4}`), ipset(`create s ${V4} -exist`), ipset(`create s ${IF4} -exist`), ipset("create s hash:net family inet maxelem 65536 -exist"),
    ipset(`create m ${MAC}`), ipset("create m bitmap:ip,mac range 198.18.0.0-198.18.255.255 -exist"), ipset("create m bitmap:ip,mac range 198.19.0.0/16 -exist"),
  ],
  "add, del, flush, destroy of a missing set": [
    ipset("add nosuch 198.18.0.1"), ipset("del nosuch 198.18.0.1 -exist"), ipset("flush nosuch"), ipset("destroy nosuch"),
  ],
  "a failing ipset restore keeps what came before the refused line": [
    ipset(`create m ${MAC}`, "add m 198.18.0.1,02:00:00:00:00:01", "add m 198.19.0.1,02:00:00:00:00:02", "add m 198.18.0.3,02:00:00:00:00:03"),
    ipset(`create b ${V4}`, "add m 198.18.0.4,02:00:00:00:00:04", "add b 198.18.9.0/24", "add b 198.18.9.0/24", "add m 198.18.0.5,02:00:00:00:00:05"),
  ],
  "a line ipset cannot parse also loses the add/del lines buffered before it": [
    ipset(`create m ${MAC}`, "add m 198.18.0.1,02:00:00:00:00:01", "add m 198.18.0.2,zz:00:00:00:00:02", "add m 198.18.0.3,02:00:00:00:00:03"),
    ipset(`create a ${V4}`, "add a 198.18.0.1", "add a 198.18.0.2", "add nosuch 198.18.0.3"),
    ipset("add a 198.18.0.7", "del m 198.18.0.1 -exist", "add m 198.18.0.8,02:00:00:00:00:08", "add m 198.18.0.9,bad"),
  ],
  "-X of a chain a rule still jumps to is refused, and the whole restore with it": [
    ipt(4, ":pal-a - [0:0]", ":pal-b - [0:0]", "-A pal-a -j pal-b", "-A pal-b -j DROP"),
    ipt(4, ":pal-b - [0:0]", "-X pal-b"), ipt(4, ":pal-a - [0:0]", "-A pal-a -g pal-b"), ipt(4, ":pal-b - [0:0]", "-X pal-b"),
    ipt(4, ":pal-a - [0:0]", ":pal-b - [0:0]", "-X pal-a", "-X pal-b"),
  ],
  "-X of a chain that holds rules is refused, even unreferenced": [
    ipt(4, ":pal-a - [0:0]", "-A pal-a -j DROP"), ipt(4, "-X pal-a"), ipt(4, ":pal-a - [0:0]", "-X pal-a"),
  ],
  "-X, -A, -D, -I on chains or positions that do not exist": [
    ipt(4, "-X pal-nope"), ipt(4, "-A pal-nope -j DROP"), ipt(4, "-D FORWARD 1"), ipt(4, "-I FORWARD 2 -j DROP"),
    ipt(4, "-I FORWARD 1 -j DROP", "-I FORWARD 2 -j ACCEPT", "-D FORWARD 1"),
  ],
  "a jump or goto to a chain that does not exist (or is declared later in the restore)": [
    ipt(4, ":pal-a - [0:0]", "-A pal-a -j pal-zz"), ipt(4, ":pal-a - [0:0]", "-A pal-a -g pal-zz"),
    ipt(4, ":pal-a - [0:0]", "-A pal-a -j pal-b", ":pal-b - [0:0]"), ipt(4, ":pal-a - [0:0]", ":pal-b - [0:0]", "-A pal-a -j pal-b"),
  ],
  "a rule matching a set that does not exist, or one of the other family; a list:set matches in both": [
    ipset(`create s ${V4}`, `create t ${V6}`, `create m ${MAC}`, `create l ${LIST}`, "add l m"),
    ipt(4, ":pal-a - [0:0]", "-A pal-a -m set --match-set nosuch src -j DROP"),
    ipt(4, ":pal-a - [0:0]", "-A pal-a -m set --match-set t src -j DROP"),
    ipt(6, ":pal-a - [0:0]", "-A pal-a -m set --match-set s src -j DROP"),
    ipt(6, ":pal-a - [0:0]", "-A pal-a -m set --match-set m src,src -j DROP"),
    ipt(4, ":pal-a - [0:0]", "-A pal-a -m set --match-set l src,src -j DROP", "-A pal-a -m set --match-set s src -j DROP"),
    ipt(6, ":pal-a - [0:0]", "-A pal-a -m set --match-set l src,src -j DROP", "-A pal-a -m set --match-set t dst -j DROP"),
    ipset("destroy m"), ipset("destroy l"),
  ],
  // Each table's section is its own transaction (both backends): a failing
  // filter section keeps the raw section before it.
  "a restore with a raw and a filter section: the raw section stays when the filter section fails": [
    iptRaw(4, [":pal-PREROUTING - [0:0]", "-A pal-PREROUTING -i br0 -j CT --zone 5", "-I PREROUTING 1 -j pal-PREROUTING"], [":pal-a - [0:0]", "-A pal-a -j pal-zz"]),
    iptRaw(6, [":pal-PREROUTING - [0:0]", "-A pal-PREROUTING -i br0 -j CT --zone 5"], [":pal-a - [0:0]", "-A pal-a -j DROP"]),
    iptRaw(6, ["-D PREROUTING 1", ":pal-PREROUTING - [0:0]", "-X pal-PREROUTING"], []),
  ],
};

/** Chains and rules of the filter table, as iptables-save prints them (counters, comments and warnings aside). */
function tableOf(save: string, table: "filter" | "raw" = "filter"): Record<string, string[]> {
  const t: Record<string, string[]> = table === "filter" ? { INPUT: [], FORWARD: [], OUTPUT: [] } : { PREROUTING: [], OUTPUT: [] };
  let inFilter = false;
  for (const l of save.split("\n")) {
    if (l.startsWith("*")) inFilter = l === `*${table}`;
    else if (!inFilter) continue;
    else if (l.startsWith(":")) t[l.slice(1).split(" ")[0]!] ??= [];
    else if (l.startsWith("-A ")) { const sp = l.indexOf(" ", 3); (t[l.slice(3, sp)] ??= []).push(l.slice(sp + 1)); }
  }
  return t;
}

/** Sets by name: type, family (hash types), members sorted. */
function setsOf(save: string): Record<string, string[]> {
  const s: Record<string, string[]> = {};
  for (const l of save.split("\n")) {
    const p = l.trim().split(/\s+/);
    if (p[0] === "create") s[p[1]!] = [`${p[2]}${p.includes("inet6") ? " inet6" : ""}`];
    else if (p[0] === "add") s[p[1]!]!.push(p[2]!);
  }
  for (const v of Object.values(s)) v.splice(1, v.length - 1, ...v.slice(1).sort());
  return s;
}

async function run(r: CommandRunner, backend: "nft" | "legacy", step: Step): Promise<string | undefined> {
  const [cmd, args] = step.tool === "ipset" ? ["ipset", ["restore"]] : [`${step.family === 6 ? "ip6" : "ip"}tables-${backend}-restore`, ["--noflush", "--wait", "10"]];
  try {
    await r.run(cmd, args, step.text);
    return undefined;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return err.stderr;
  }
}

async function state(r: CommandRunner, backend: "nft" | "legacy") {
  const t = async (f: 4 | 6, table: "filter" | "raw" = "filter") => tableOf((await r.run(`${f === 6 ? "ip6" : "ip"}tables-${backend}-save`, ["-t", table])).stdout, table);
  return { ipv4: await t(4), ipv6: await t(6), raw4: await t(4, "raw"), raw6: await t(6, "raw"), sets: setsOf((await r.run("ipset", ["save"])).stdout) };
}

/** The message a refusal is about, without the tool's name, version and line. */
const gist = (stderr: string) =>
  stderr.replace(/^(ipset v[\d.]+: (Error in line \d+: )?|ip6?tables-nft-restore( v[\d.]+ \(nf_tables\))?: (\n?line \d+:? (failed: )?)?)/, "").trim().split("\n")[0]!;

for (const backend of ["nft", "legacy"] as const) {
  describe(`the fake kernel refuses what the kernel refuses (${backend})`, () => {
    for (const [name, steps] of Object.entries(CASES)) {
      it(name, async () => {
        const ns = uniqueName(`fk${backend[0]}`);
        await execa("ip", ["netns", "add", ns]);
        try {
          const real = createExecRunner({ netns: ns });
          const fake = new FakeKernel();
          let refusals = 0;
          for (const [i, step] of steps.entries()) {
            const what = `step ${i + 1}: ${step.text.trim().replace(/\n/g, " | ")}`;
            const r = await run(real, backend, step);
            const f = await run(fake, backend, step);
            expect({ what, refused: f !== undefined }).toEqual({ what, refused: r !== undefined });
            if (r !== undefined && f !== undefined) {
              refusals++;
              if (backend === "nft") expect(r, what).toContain(gist(f));
            }
            expect(await state(fake, backend), what).toEqual(await state(real, backend));
          }
          // Every case has something refused: none of them tests only the easy path.
          expect(refusals).toBeGreaterThan(0);
        } finally {
          await execa("ip", ["netns", "del", ns], { reject: false });
        }
      });
    }
  });
}

// The interactive `ipset -` (DESIGN §6.7): the same batches written to a
// session on the real ipset (through the real runner's openSession:
// stdbuf, stderr merged) and on the fake must print the same output, byte
// for byte (prompts, messages without line numbers, `version`'s answer),
// and leave the same sets behind after every batch: a refused line changes
// nothing and the lines after it are carried out.
const SESSION_CASES: Record<string, string[][]> = {
  "adds and dels, a refused line in the middle, the lines after it carried out": [
    [`create a ${V4}`, `create i ${IF4}`, `create m ${MAC}`, `create l ${LIST}`],
    ["add a 198.18.0.1 -exist", "add a 198.18.0.2", "add a 198.18.0.2", "add a 198.18.0.3", "del a 198.18.0.9", "del a 198.18.0.1"],
    ["add nosuch 198.18.0.1 -exist", "add a 198.18.0.4 -exist", "add a bad -exist", "add a 198.18.0.5 -exist", "add i 198.18.0.1,tap1 -exist", "add i 198.18.0.2 -exist"],
    ["add m 198.18.0.1,02:00:00:00:00:01 -exist", "add m 198.19.0.1,02:00:00:00:00:01 -exist", "add m 198.18.0.1,02:00:00:00:00:02 -exist", "add l m -exist", "add l nosuch -exist", "del l m -exist"],
    ["destroy a", "add a 198.18.0.6 -exist", "create a hash:net family inet6 -exist", "del a 198.18.0.1 -exist", "flush i", "add s 0.0.0.0/0 -exist"],
  ],
  "-exist, once given, holds for every later line of the session": [
    [`create a ${V4}`, "add a 198.18.0.1", "add a 198.18.0.1", "del a 198.18.0.9", "add a 198.18.0.2 -exist", "add a 198.18.0.2", "del a 198.18.0.9"],
    ["add a 198.18.0.1", "del a 198.18.0.8", "add nosuch 198.18.0.1"],
  ],
};

/** Everything a session printed, from its start. */
function transcript(s: CommandSession): { text: string } {
  const t = { text: "" };
  s.onOutput((x) => { t.text += x; });
  return t;
}

/** Writes a batch and the sentinel; waits for its answer and the prompt after it. */
async function sessionBatch(s: CommandSession, t: { text: string }, lines: string[], n: number): Promise<void> {
  s.write(`${lines.join("\n")}\nversion\n`);
  const end = Date.now() + 5_000;
  while (!((t.text.match(/protocol version: \d+\n/g) ?? []).length >= n && t.text.endsWith("ipset> "))) {
    if (s.ended || Date.now() > end) throw new Error(`no answer to batch ${n} (ended: ${s.ended}); output so far: ${t.text}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("ipset - (interactive): the fake answers as the real one", () => {
  for (const [name, batches] of Object.entries(SESSION_CASES)) {
    it(name, async () => {
      const ns = uniqueName("fks");
      await execa("ip", ["netns", "add", ns]);
      const real = createExecRunner({ netns: ns });
      const fake = new FakeKernel();
      const sessions: CommandSession[] = [];
      try {
        const rs = real.openSession!("ipset", ["-"]);
        const fs = fake.openSession("ipset", ["-"]);
        sessions.push(rs, fs);
        const [rt, ft] = [transcript(rs), transcript(fs)];
        for (const [i, lines] of batches.entries()) {
          await sessionBatch(rs, rt, lines, i + 1);
          await sessionBatch(fs, ft, lines, i + 1);
          const what = `batch ${i + 1}: ${lines.join(" | ")}`;
          expect(ft.text, what).toBe(rt.text);
          expect(await state(fake, "nft"), what).toEqual(await state(real, "nft"));
        }
        expect((rt.text.match(/ipset v7\.17: /g) ?? []).length).toBeGreaterThan(0);
        expect(rs.ended).toBe(false);
      } finally {
        for (const s of sessions) await s.kill();
        await execa("ip", ["netns", "del", ns], { reject: false });
      }
    });
  }
});

// The planner's answer to what the fake refuses, on the real kernel too: a
// MAC set left with another type or range while the list:set holds it
// (a leftover, or someone's edit) is taken out of the list, re-created and
// listed again; the first apply succeeds and nothing is left to repair.
describe("a listed MAC set of another type or range is re-created (real ipset)", () => {
  const logger = createLogger({ name: "test", level: "silent" });
  const base = driverBaseChains(["tap"], [4]);
  for (const [what, header] of [["another type", "hash:net family inet maxelem 1048576"], ["another range", "bitmap:ip,mac range 198.19.0.0/16"]] as const) {
    it(what, async () => {
      const ns = uniqueName("fkr");
      await execa("ip", ["netns", "add", ns]);
      try {
        const real = createExecRunner({ netns: ns });
        await real.run("ipset", ["restore"], `create pal4m-198-18 ${header}\ncreate pal4mac list:set size 65536\nadd pal4mac pal4m-198-18\n`);
        const entry = (n: string): ChainDef => ({ table: "filter", family: 4, name: n, rules: ["-m set --match-set pal4mac src,src -j RETURN", "-j DROP"] });
        const input: PlanInput = {
          chains: new Map([...base, ...["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => [chainKey(4, n), entry(n)] as const)]),
          sets: new Map<string, DesiredSet>([
            ["pal4mac", { family: 4, members: new Set(["pal4m-198-18"]) }],
            ["pal4m-198-18", { family: 4, members: new Set(["198.18.0.5,02:00:00:00:00:01"]) }],
          ]),
          families: [4],
          removeUnwanted: true,
        };
        const dp = createDataplane({ runner: real, backend: "nft", families: [4], logger });
        await dp.apply(input);
        const saved = (await real.run("ipset", ["save"])).stdout;
        expect(saved).toContain("create pal4m-198-18 bitmap:ip,mac range 198.18.0.0-198.18.255.255");
        expect(setsOf(saved)).toEqual({ pal4mac: ["list:set", "pal4m-198-18"], "pal4m-198-18": ["bitmap:ip,mac", "198.18.0.5,02:00:00:00:00:01"] });
        expect(await dp.detectDrift()).toBe(false);
      } finally {
        await execa("ip", ["netns", "del", ns], { reject: false });
      }
    });
  }
});
