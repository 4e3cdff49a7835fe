// npm run bench [-- --size full|quick|ci] [--quick] [--only calc|fanout|driver|density|revoke|e2e|flows|openstack]
//   [--topology routed|bridged|both] [--lists random|pool|combos|all] [--no-ipset-session]
//   [--density-sizes N,…] [--density-backends nft,legacy] [--no-density-memory] [--json FILE]:
// performance figures, printed. Not part of npm test's pass/fail on speed:
// speed is measured here, behaviour is tested there. `--size ci` runs every
// section at a tiny size so that CI (test/e2e/bench-ci.test.ts) sees the
// bench complete; its figures mean nothing. Every section runs under a
// deadline (deadline.ts): a hang ends the run with exit code 1 and a message
// naming the section and what it was waiting for. --topology (default both):
// the driver and density sections' host has routed taps, bridged ones (every
// tap a bridge port, the state through the driver's BridgeLayer, DESIGN
// §6.3), or each in turn; bridged figures are reported beside the routed
// ones (`driver_bridged`, density rows with topology "bridged"). --lists
// (default all): the density section's profile-list models (density.ts).
import { writeFileSync } from "node:fs";
import { benchCalc } from "./calc-scale.js";
import { DeadlineExceeded, withDeadline } from "./deadline.js";
import { benchDensity, DENSITY_VARIANTS, formatDensity, type ListModel } from "./density.js";
import { benchDriver } from "./driver-apply.js";
import { benchE2e } from "./e2e-latency.js";
import { benchRevoke, formatRevoke } from "./revoke.js";
import { benchFanout } from "./fanout.js";
import { benchFlows } from "./flows.js";
import { benchOpenstack } from "./openstack.js";
import { TOPOLOGIES, type Topology } from "./host-feed.js";
import { SIZES, type SizeName } from "./sizes.js";
import { silenceIpServerNameWarning } from "../../services/runtime/tls.js";

silenceIpServerNameWarning();

const args = process.argv.slice(2);
const valueOf = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
// --only NAME: one section (e.g. --only flows).
const only = valueOf("--only");
const sizeName = (valueOf("--size") ?? (args.includes("--quick") ? "quick" : "full")) as SizeName;
const size = SIZES[sizeName];
if (!size) {
  process.stderr.write(`bench: unknown --size '${sizeName}' (full, quick or ci)\n`);
  process.exit(2);
}
const sections = ["calc", "fanout", "driver", "density", "revoke", "e2e", "flows", "openstack"] as const;
if (only !== undefined && !(sections as readonly string[]).includes(only)) {
  process.stderr.write(`bench: unknown section '${only}' (${sections.join(", ")})\n`);
  process.exit(2);
}
const topologyArg = valueOf("--topology") ?? "both";
if (topologyArg !== "both" && !(TOPOLOGIES as readonly string[]).includes(topologyArg)) {
  process.stderr.write(`bench: unknown --topology '${topologyArg}' (routed, bridged or both)\n`);
  process.exit(2);
}
const topologies: readonly Topology[] = topologyArg === "both" ? TOPOLOGIES : [topologyArg as Topology];
const listsArg = valueOf("--lists") ?? "all";
if (listsArg !== "all" && !(DENSITY_VARIANTS as readonly string[]).includes(listsArg)) {
  process.stderr.write(`bench: unknown --lists '${listsArg}' (${DENSITY_VARIANTS.join(", ")} or all)\n`);
  process.exit(2);
}
const variants: readonly ListModel[] = listsArg === "all" ? DENSITY_VARIANTS : [listsArg as ListModel];
const jsonAt = valueOf("--json");
const results: Record<string, unknown> = {};
const seconds: Record<string, number> = {};

function report(name: string, figures: Record<string, unknown>) {
  results[name] = figures;
  process.stdout.write(`${name.padEnd(8)} ${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(name === "openstack" ? "\n         " : "  ")}\n`);
}

function writeJson() {
  if (jsonAt !== undefined) writeFileSync(jsonAt, `${JSON.stringify({ ...results, size: sizeName, section_seconds: seconds }, null, 2)}\n`);
}

async function section(name: (typeof sections)[number], fn: (signal: AbortSignal) => Promise<void> | void) {
  if (only && only !== name) return;
  const t0 = performance.now();
  try {
    await withDeadline(name, size!.deadlineS[name] * 1000, fn);
  } catch (e) {
    // Figures gathered so far are kept; the failure is said in one line.
    const why = e instanceof DeadlineExceeded ? e.message : `section '${name}' failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
    results.failed = { section: name, error: why };
    writeJson();
    process.stderr.write(`bench: FAILED: ${why}\n`);
    process.exit(1);
  }
  seconds[name] = Math.round((performance.now() - t0) / 100) / 10;
}

await section("calc", () => { report("calc", benchCalc(size.calc)); });

await section("fanout", async (signal) => { report("fanout", await benchFanout({ ...size.fanout, signal })); });

await section("driver", async () => {
  for (const topology of topologies) {
    for (const backend of ["nft", "legacy"] as const) {
      const r = await benchDriver({ ...size.driver, backend, topology });
      // Routed under the names it always had (driver, driver_legacy).
      report(`driver${backend === "nft" ? "" : "_legacy"}${topology === "routed" ? "" : `_${topology}`}`, r);
    }
  }
});

// One host at growing density (issue #14): rules, first apply, single changes
// vs. their raw floor; controller memory per endpoint.
// --density-sizes N[,N…] / --density-backends nft[,legacy] / --no-density-memory:
// one part of the section (e.g. a before/after of one figure).
const densitySizes = valueOf("--density-sizes")?.split(",").map(Number);
const densityBackends = valueOf("--density-backends")?.split(",") as ("nft" | "legacy")[] | undefined;
if (densitySizes?.some((n) => !Number.isInteger(n) || n < 1) || densityBackends?.some((b) => b !== "nft" && b !== "legacy")) {
  process.stderr.write("bench: --density-sizes takes endpoint counts, --density-backends nft and/or legacy\n");
  process.exit(2);
}
await section("density", async () => {
  const density = await benchDensity({
    ...size.density, topologies, variants,
    ...(densitySizes ? { sizes: densitySizes } : {}), ...(densityBackends ? { backends: densityBackends } : {}),
    ...(args.includes("--no-density-memory") ? { memory: [] } : {}),
  });
  results.density = density;
  process.stdout.write(formatDensity(density));
});

// Ending revoked connections (issue #21 item 6, DESIGN §6.14): a revocation
// touching one endpoint, changes that revoke nothing with the feature on and
// off, and the rule lookups of an established packet; conntrack entries in
// the driver's namespace.
await section("revoke", async () => {
  const revoke = await benchRevoke({ ...size.revoke, topologies });
  results.revoke = revoke;
  process.stdout.write(formatRevoke(revoke));
});

await section("e2e", async (signal) => {
  const e2e = await benchE2e({ ...size.e2e, signal });
  report("e2e", e2e);
  // The same path under mutual TLS (controller, API client and driver each with a certificate).
  const e2eTls = await benchE2e({ ...size.e2e, tls: true, signal });
  report("e2e_tls", { ...e2eTls, p50_ratio_vs_plaintext: (e2eTls.p50_ms / e2e.p50_ms).toFixed(2), p99_ratio_vs_plaintext: (e2eTls.p99_ms / e2e.p99_ms).toFixed(2) });
});

// Flow reports: a flood of denied new flows while policy changes are applied.
await section("flows", async (signal) => { report("flows", await benchFlows({ ...size.flows, signal })); });

// palisade-openstack watch against a real Neutron (DESIGN §11.7): latency, idle-poll cost at two sizes, full resync;
// and with the ML2 driver's change notices under Neutron's default configuration (§11.11, issue #22 item 2).
await section("openstack", async (signal) => { report("openstack", await benchOpenstack({ ...size.openstack, signal })); });

writeJson();
process.stdout.write(`bench    size=${sizeName}  ${Object.entries(seconds).map(([k, v]) => `${k}_s=${v}`).join("  ")}\n`);
process.exit(0);
