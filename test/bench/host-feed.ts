// One host (IPv4 only) as its driver sees it, fed by the real calculation
// graph: the driver's own plan input (plan-input.ts) over a DesiredState,
// and what changed since the last apply, as the driver hands them to its
// dataplane. Used by the driver and density sections.
import { CalcGraph, DEFAULT_CALC_CONFIG, type HostUpdate } from "../../services/calc/index.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { setCreate, type PlanInput } from "../../services/driver/plan/plan.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import type { Endpoint, Profile } from "../../services/model/index.js";

export function createHostFeed(profiles: Profile[], endpoints: Endpoint[], opts: { host?: string } = {}) {
  const host = opts.host ?? "hv0";
  let pending: HostUpdate[] = [];
  const g = new CalcGraph({ onHostUpdates: (_h, _r, u) => { pending.push(...u); } }, DEFAULT_CALC_CONFIG);
  for (const p of profiles) g.upsertProfile(p);
  for (const e of endpoints) g.upsertEndpoint(e);
  g.flush(1);
  // What a controller sends a host without IPv6.
  const v4 = (u: HostUpdate[]) => u.filter((x) => (x.type === "chain-update" ? x.chain.family : "family" in x ? x.family : 4) === 4);
  const state = new DesiredState();
  state.apply(v4(g.snapshot(host).updates));
  pending = [];
  const base = driverBaseChains(["tap"], [4]);
  let rev = 1;
  return {
    /** The driver's plan input, as it builds it. */
    input: (): PlanInput => buildPlanInput({ base, families: [4], desired: state }),
    /** What changed since the previous call (undefined the first time: plan in full). */
    changes: () => state.takeChanges(),
    /** One model change and flush; returns the updates the controller would send this host. */
    change(fn: (g: CalcGraph) => void): HostUpdate[] {
      fn(g);
      g.flush(++rev);
      const u = v4(pending);
      pending = [];
      state.apply(u);
      return u;
    },
  };
}

/**
 * The updates a host was sent, as raw `ipset restore` / `iptables-restore
 * --noflush` input (IPv4): the floor a driver applying exactly that can be
 * compared with. Sets are created first and deletions precede additions, as
 * the kernel needs (a list:set's members are sets; a bitmap:ip,mac member is
 * its address).
 */
export function rawChangeText(updates: HostUpdate[]): { ipsetBefore: string[]; restore: string | undefined; ipsetAfter: string[] } {
  const [creates, dels, adds, ipsetAfter, declare, rules, remove] = [[], [], [], [], [], [], []] as string[][];
  for (const u of updates) {
    if (u.type === "ipset-update" && u.family === 4) {
      creates!.push(`${setCreate(u.name, u)} -exist`);
      dels!.push(`flush ${u.name}`);
      adds!.push(...u.members.map((m) => `add ${u.name} ${m} -exist`));
    } else if (u.type === "ipset-delta" && u.family === 4) {
      dels!.push(...u.removed.map((m) => `del ${u.name} ${m} -exist`));
      adds!.push(...u.added.map((m) => `add ${u.name} ${m} -exist`));
    } else if (u.type === "ipset-remove" && u.family === 4) {
      ipsetAfter!.push(`destroy ${u.name}`);
    } else if (u.type === "chain-update" && u.chain.family === 4) {
      declare!.push(`:${u.chain.name} - [0:0]`);
      rules!.push(...u.chain.rules.map((r) => `-A ${u.chain.name} ${r}`));
    } else if (u.type === "chain-remove" && u.family === 4) {
      declare!.push(`:${u.name} - [0:0]`);
      remove!.push(`-X ${u.name}`);
    }
  }
  const restore = declare!.length ? ["*filter", ...declare!, ...rules!, ...remove!, "COMMIT", ""].join("\n") : undefined;
  return { ipsetBefore: [...creates!, ...dels!, ...adds!], restore, ipsetAfter: ipsetAfter! };
}
