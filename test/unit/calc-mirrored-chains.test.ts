// The mirrored (reply-direction re-check) chains on each host (DESIGN §6.5,
// "Reply-direction re-check chains"; §6.14): every host that holds a class
// or a profile's chains holds their mirrored twins, each class chain
// diverts to its twin first, the twins run the same profile list over the
// mirrored profile chains, and nothing a host's chains jump to is missing —
// after random histories, incrementally and in a snapshot.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { DEFAULT_CALC_CONFIG, type CalcConfig } from "../../services/calc/calc-config.js";
import { classKey, fromClassChain, replyFromClassChain, replyToClassChain, toClassChain } from "../../services/calc/names.js";
import { ADMIT_CHAIN } from "../../services/contract/dataplane-names.js";
import { FLOW_LOG_CHAINS } from "../../services/contract/flow-report-format.js";
import { RecordingSink, snapshotState, twinOf } from "../support/host-state.js";
import { divert, endpoint, keyOf, profile } from "../support/model.js";
import { mulberry32 } from "../support/prng.js";
import { hostsOf, randomHistory, run } from "../support/sequence-model.js";

/** Targets that are no chain of the host's: verdicts and targets. */
const TARGETS = new Set(["DROP", "RETURN", "ACCEPT", "MARK", "NFLOG", "CONNMARK"]);
/** Chains the driver renders (DESIGN §6.12, §6.14), which controller chains may name. */
const DRIVER_CHAINS = new Set<string>([...Object.values(FLOW_LOG_CHAINS), ADMIT_CHAIN]);

/** Problems of one host's chains ("family:name" -> rules); [] when all is well. */
function problems(chains: ReadonlyMap<string, readonly string[]>, cfg: CalcConfig): string[] {
  const out: string[] = [];
  for (const [key, rules] of chains) {
    const family = key.slice(0, key.indexOf(":"));
    const name = key.slice(key.indexOf(":") + 1);
    for (const r of rules) {
      for (const m of r.matchAll(/(?:^| )-[jg] (\S+)/g)) {
        const t = m[1]!;
        if (!TARGETS.has(t) && !DRIVER_CHAINS.has(t) && !chains.has(`${family}:${t}`)) out.push(`${key}: -j/-g ${t} does not exist`);
      }
    }
    const twin = twinOf(name);
    if (twin !== undefined && !chains.has(`${family}:${twin}`)) out.push(`${key}: no twin ${twin}`);
    const mirrored = /^pal-(?:rf_|rt_|qi[-_]|qo[-_])/.test(name);
    if (mirrored && rules.some((r) => r.includes("NFLOG") || /-[jg] pal-log/.test(r))) out.push(`${key}: a report point in a mirrored chain`);
    const cls = /^pal-c([ft])_(.+)$/.exec(name);
    if (!cls) continue;
    // The divert comes first; the twin runs the same list: from the
    // workload the mirrored inbound chains, to it the mirrored outbound ones.
    const from = cls[1] === "f";
    const twinRules = chains.get(`${family}:${twin}`) ?? [];
    const replyTwin = from ? replyFromClassChain(cls[2]!) : replyToClassChain(cls[2]!);
    if (rules[0] !== divert(replyTwin)) out.push(`${key}: first rule ${rules[0]} is not the divert to ${replyTwin}`);
    if (!cfg.flowLogs) {
      // The other class chain of the class runs the profiles of the direction the twin mirrors.
      const other = chains.get(`${family}:${from ? toClassChain(cls[2]!) : fromClassChain(cls[2]!)}`) ?? [];
      const body = other.filter((r) => !r.startsWith("-m mark --mark 0x4000000/") && r !== "-j pal-from-wl-mac");
      const want = body.map((r) => r.replace(/^-j pal-p([io])([-_])/, "-j pal-q$1$2"));
      if (JSON.stringify(twinRules) !== JSON.stringify(want)) out.push(`${key}: twin ${twin} is ${JSON.stringify(twinRules)}, not ${JSON.stringify(want)}`);
    }
  }
  return out;
}

describe("mirrored chains on each host (DESIGN §6.5)", () => {
  for (const [what, cfg] of [["reports off", DEFAULT_CALC_CONFIG], ["reports on", { ...DEFAULT_CALC_CONFIG, flowLogs: true }]] as const) {
    it(`random histories, ${what}: every class and profile chain has its twin, every target exists, incrementally and in the snapshot`, () => {
      for (let seed = 1; seed <= 40; seed++) {
        const history = randomHistory(mulberry32(seed));
        const { sink, g } = run(history, { random: mulberry32(seed + 1000) }, cfg);
        // After every batch (HostState checks twins and jump targets too;
        // it does not know the driver's chains, which the driver renders).
        const driverRef = (v: string) => [...DRIVER_CHAINS].some((c) => v.endsWith(`jumps to missing ${c}`));
        expect(sink.violations().filter((v) => !driverRef(v)), `seed ${seed}`).toEqual([]);
        for (const h of hostsOf(history)) {
          expect(problems(sink.state(h).chains, cfg), `seed ${seed} ${h}`).toEqual([]);
          expect(problems(snapshotState(g, h).chains, cfg), `seed ${seed} ${h} snapshot`).toEqual([]);
        }
      }
    });
  }

  it("a profile's mirrored chains follow its normal ones onto and off each host; a deleted profile drops in the twins too", () => {
    const sink = new RecordingSink();
    const g = new CalcGraph(sink);
    let rev = 0;
    const ep = (host: string, id: string, ids: string[]) =>
      endpoint({ host, workload: id, id, name: `tap-${id}`, ipv4_nets: [`198.18.0.${id.length + (host === "hv1" ? 1 : 10)}`], profile_ids: ids });
    g.upsertProfile(profile({ id: "web", inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] }));
    g.upsertProfile(profile({ id: "ops", inbound_rules: [{ protocol: "tcp", dst_ports: [22] }] }));
    g.upsertEndpoint(ep("hv1", "a", ["web"]));
    g.upsertEndpoint(ep("hv2", "bb", ["ops", "web"]));
    g.flush(++rev);
    const has = (h: string, name: string) => sink.state(h).chain(4, name) !== undefined && sink.state(h).chain(6, name) !== undefined;
    for (const c of ["pal-pi-web", "pal-po-web", "pal-qi-web", "pal-qo-web"]) expect(has("hv1", c) && has("hv2", c)).toBe(true);
    expect(has("hv1", "pal-qi-ops")).toBe(false);
    expect(has("hv2", "pal-qi-ops") && has("hv2", "pal-qo-ops")).toBe(true);
    const B = classKey(["ops", "web"]);
    expect(sink.state("hv2").chain(4, replyFromClassChain(B))).toEqual([
      "-j MARK --set-xmark 0x0/0x1000000", "-j pal-qi-ops", "-m mark --mark 0x1000000/0x1000000 -j RETURN",
      "-j pal-qi-web", "-m mark --mark 0x1000000/0x1000000 -j RETURN", "-j DROP",
    ]);
    expect(sink.state("hv2").chain(4, "pal-qi-ops")).toEqual(["-p tcp -m multiport --sports 22 -j MARK --set-xmark 0x1000000/0x1000000", "-m mark --mark 0x1000000/0x1000000 -j RETURN"]);

    // The profile is deleted: the twins drop in its place, its mirrored chains leave every host.
    g.deleteProfile("ops");
    g.flush(++rev);
    expect(sink.state("hv2").chain(4, replyFromClassChain(B))).toEqual(["-j MARK --set-xmark 0x0/0x1000000", "-j DROP"]);
    expect(sink.state("hv2").chain(4, replyToClassChain(B))).toEqual(["-j MARK --set-xmark 0x0/0x1000000", "-j DROP"]);
    expect(has("hv2", "pal-qi-ops") || has("hv2", "pal-qo-ops")).toBe(false);

    // hv1's last endpoint goes: its class, mirrored class and profile chains go with it.
    g.deleteEndpoint(keyOf(ep("hv1", "a", ["web"])));
    g.flush(++rev);
    const A = classKey(["web"]);
    for (const c of [fromClassChain(A), toClassChain(A), replyFromClassChain(A), replyToClassChain(A), "pal-pi-web", "pal-qi-web", "pal-qo-web"]) {
      expect(has("hv1", c), c).toBe(false);
    }
    expect(has("hv2", "pal-qi-web")).toBe(true);
    expect(sink.violations()).toEqual([]);
    for (const h of ["hv1", "hv2"]) expect(problems(sink.state(h).chains, DEFAULT_CALC_CONFIG), h).toEqual([]);
  });
});
