// The mirrored (reply-direction re-check) chains on each host (DESIGN §6.5,
// "Reply-direction re-check chains"; §6.14): every host that holds a
// workload or position chain or a profile's chains holds their mirrored
// twins, each workload chain diverts to its twin first, the twins find the
// same profiles at each position and go to their mirrored chains, and
// nothing a host's chains jump to is missing — after random histories,
// incrementally and in a snapshot.
import { describe, expect, it } from "vitest";
import { CalcGraph } from "../../services/calc/calc-graph.js";
import { DEFAULT_CALC_CONFIG, type CalcConfig } from "../../services/calc/calc-config.js";
import { missingSet, positionSet, profileKey } from "../../services/calc/names.js";
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
    const mirrored = /^pal-(?:r[ft](?:\d|$)|qi[-_]|qo[-_])/.test(name);
    if (mirrored && rules.some((r) => r.includes("NFLOG") || /-[jg] pal-log/.test(r))) out.push(`${key}: a report point in a mirrored chain`);
    const wl = /^pal-c([ft])(\d.*)?$/.exec(name);
    if (!wl) continue;
    const from = wl[1] === "f";
    const rest = wl[2] ?? "";
    // A workload chain's divert comes first.
    if (!rest && rules[0] !== divert(twin!)) out.push(`${key}: first rule ${rules[0]} is not the divert to ${twin}`);
    if (!cfg.flowLogs) {
      // The twin finds the profiles the *other* direction's chain finds, by
      // this direction's lookup, and runs their mirrored chains: from the
      // workload (a reply leaving the original receiver) the mirrored
      // inbound chains, to it the mirrored outbound ones.
      const [self, other] = from ? ["f", "t"] : ["t", "f"];
      const [flag, otherFlag] = from ? ["src,src", "dst,dst"] : ["dst,dst", "src,src"];
      const otherRules = chains.get(`${family}:pal-c${other}${rest}`) ?? [];
      const body = otherRules.filter((r) => !r.startsWith("-m mark --mark 0x4000000/") && r !== "-j pal-from-wl-mac");
      const want = body.map((r) => r
        .replace(` ${otherFlag} `, ` ${flag} `)
        .replace(new RegExp(`-([jg]) pal-c${other}(\\d)`), `-$1 pal-r${self}$2`)
        .replace(/-g pal-p([io])([-_])/, "-g pal-q$1$2"));
      const twinRules = chains.get(`${family}:${twin}`) ?? [];
      if (JSON.stringify(twinRules) !== JSON.stringify(want)) out.push(`${key}: twin ${twin} is ${JSON.stringify(twinRules)}, not ${JSON.stringify(want)}`);
    }
  }
  return out;
}

describe("mirrored chains on each host (DESIGN §6.5)", () => {
  for (const [what, cfg] of [["reports off", DEFAULT_CALC_CONFIG], ["reports on", { ...DEFAULT_CALC_CONFIG, flowLogs: true }]] as const) {
    it(`random histories, ${what}: every workload, position and profile chain has its twin, every target exists, incrementally and in the snapshot`, () => {
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
    expect(sink.state("hv2").chain(4, "pal-rf")).toEqual([
      "-j MARK --set-xmark 0x0/0x1000000", "-j pal-rf0", "-m mark --mark 0x1000000/0x1000000 -j RETURN",
      "-j pal-rf1", "-m mark --mark 0x1000000/0x1000000 -j RETURN", "-j DROP",
    ]);
    expect(sink.state("hv2").chain(4, "pal-rf0")).toEqual([`-m set --match-set ${positionSet(0, profileKey("ops"), 4)} src,src -g pal-qi-ops`, "-j DROP"]);
    expect(sink.state("hv2").chain(4, "pal-rf1")).toEqual([`-m set --match-set ${positionSet(1, profileKey("web"), 4)} src,src -g pal-qi-web`, "-j DROP"]);
    expect(sink.state("hv2").chain(4, "pal-qi-ops")).toEqual(["-p tcp -m multiport --sports 22 -j MARK --set-xmark 0x1000000/0x1000000", "-m mark --mark 0x1000000/0x1000000 -j RETURN"]);

    // The profile is deleted: the twins drop in its place, its mirrored chains leave every host.
    g.deleteProfile("ops");
    g.flush(++rev);
    expect(sink.state("hv2").chain(4, "pal-rf0")).toEqual([`-m set --match-set ${missingSet(0, 4)} src,src -j DROP`, "-j DROP"]);
    expect(sink.state("hv2").chain(4, "pal-rt0")).toEqual([`-m set --match-set ${missingSet(0, 4)} dst,dst -j DROP`, "-j DROP"]);
    expect(has("hv2", "pal-qi-ops") || has("hv2", "pal-qo-ops")).toBe(false);

    // hv1's last endpoint goes: its position chains, their twins and the profile's chains go with it.
    g.deleteEndpoint(keyOf(ep("hv1", "a", ["web"])));
    g.flush(++rev);
    for (const c of ["pal-cf0", "pal-ct0", "pal-rf0", "pal-rt0", "pal-pi-web", "pal-qi-web", "pal-qo-web"]) {
      expect(has("hv1", c), c).toBe(false);
    }
    expect(has("hv2", "pal-qi-web")).toBe(true);
    expect(sink.violations()).toEqual([]);
    for (const h of ["hv1", "hv2"]) expect(problems(sink.state(h).chains, DEFAULT_CALC_CONFIG), h).toEqual([]);
  });
});
