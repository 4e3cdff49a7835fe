// npm run bench [-- --quick] [--only calc|fanout|driver|density|e2e|flows|openstack] [--json FILE]: performance figures, printed.
// Not part of npm test: speed is measured here, behaviour is tested there.
import { writeFileSync } from "node:fs";
import { benchCalc } from "./calc-scale.js";
import { benchDensity, formatDensity } from "./density.js";
import { benchDriver } from "./driver-apply.js";
import { benchE2e } from "./e2e-latency.js";
import { benchFanout } from "./fanout.js";
import { benchFlows } from "./flows.js";
import { benchOpenstack } from "./openstack.js";
import { silenceIpServerNameWarning } from "../../services/runtime/tls.js";

silenceIpServerNameWarning();

const args = process.argv.slice(2);
// --only NAME: one section (e.g. --only flows).
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const quick = args.includes("--quick");
const jsonAt = args.indexOf("--json");
const results: Record<string, unknown> = {};

function report(name: string, figures: Record<string, unknown>) {
  results[name] = figures;
  process.stdout.write(`${name.padEnd(8)} ${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(name === "openstack" ? "\n         " : "  ")}\n`);
}

const run = (name: string) => !only || only === name;

if (run("calc")) {
  report("calc", benchCalc(quick
    ? { hosts: 200, endpointsPerHost: 100, profiles: 500, rulesPerProfile: 10, updates: 2000 }
    : { hosts: 1000, endpointsPerHost: 100, profiles: 2000, rulesPerProfile: 10, updates: 5000 }));
}

if (run("fanout")) report("fanout", await benchFanout({ streams: 1000, samples: quick ? 20 : 50 }));

if (run("driver")) {
  for (const backend of ["nft", "legacy"] as const) {
    const r = await benchDriver({ endpoints: 1000, profiles: 100, rulesPerProfile: 10, incrementalSamples: quick ? 10 : 30, backend });
    report(backend === "nft" ? "driver" : "driver_legacy", r);
  }
}
// One host at growing density (issue #14): rules, first apply, single changes
// vs. their raw floor; controller memory per endpoint.
if (run("density")) {
  const density = await benchDensity(quick
    ? { sizes: [1000, 3000], backends: ["nft", "legacy"], samples: () => 10, memory: [100_000], baseline: 300 }
    : { sizes: [1000, 3000, 6000], backends: ["nft", "legacy"], samples: (n) => (n >= 6000 ? 10 : 20), memory: [100_000, 300_000], baseline: 300 });
  results.density = density;
  process.stdout.write(formatDensity(density));
}
if (run("e2e")) {
  const e2e = await benchE2e({ samples: quick ? 50 : 200, endpoints: quick ? 50 : 200 });
  report("e2e", e2e);
  // The same path under mutual TLS (controller, API client and driver each with a certificate).
  const e2eTls = await benchE2e({ samples: quick ? 50 : 200, endpoints: quick ? 50 : 200, tls: true });
  report("e2e_tls", { ...e2eTls, p50_ratio_vs_plaintext: (e2eTls.p50_ms / e2e.p50_ms).toFixed(2), p99_ratio_vs_plaintext: (e2eTls.p99_ms / e2e.p99_ms).toFixed(2) });
}

// Flow reports: a flood of denied new flows while policy changes are applied.
if (run("flows")) report("flows", await benchFlows({ samples: quick ? 15 : 40, floodSeconds: quick ? 8 : 20, probes: quick ? 20 : 50 }));

// palisade-openstack watch against a real Neutron (DESIGN §11.7): latency, idle-poll cost at two sizes, full resync.
if (run("openstack")) report("openstack", await benchOpenstack({ sizes: quick ? [100, 500] : [100, 1000], samples: 20 }));

if (jsonAt >= 0) writeFileSync(args[jsonAt + 1]!, `${JSON.stringify(results, null, 2)}\n`);
process.exit(0);
