// Bench sizes (main.ts --size): what each section runs at, and its deadline.
//   full   the figures in README "Performance" (default)
//   quick  a shorter run of the same shape (--quick)
//   ci     every section at a tiny size, so that CI sees the whole bench
//          complete (test/e2e/bench-ci.test.ts); its figures mean nothing.
// Deadlines are hang guards (DESIGN §8.6), several times what a section
// takes on the 2-core development machine while other work runs.
import type { AdmissionOptions } from "../../services/controller/stream-admission.js";
import type { Backend } from "../../services/driver/kernel/backend.js";

export type SizeName = "full" | "quick" | "ci";
type Section = "calc" | "fanout" | "driver" | "density" | "revoke" | "e2e" | "flows" | "openstack";

export interface BenchSize {
  calc: { hosts: number; endpointsPerHost: number; profiles: number; rulesPerProfile: number; updates: number };
  fanout: { streams: number; samples: number; admission?: AdmissionOptions };
  driver: { endpoints: number; profiles: number; rulesPerProfile: number; incrementalSamples: number };
  density: { sizes: number[]; backends: Backend[]; samples: (size: number) => number; memory: number[]; baseline: number };
  /** Issue #21 item 6: endpoints on the host, conntrack entries in its namespace, samples per kind of change. */
  revoke: { endpoints: number; conntrack: number; samples: number };
  e2e: { samples: number; endpoints: number };
  flows: { samples: number; floodSeconds: number; probes: number; counterWaitS?: number };
  /** ml2IdleS: the ML2 case's idle window (default 65 s, one poll of its --interval 60). */
  openstack: { sizes: [number, number]; samples: number; polls?: number; ml2IdleS?: number };
  deadlineS: Record<Section, number>;
}

const MIN = 60;
const generous: Record<Section, number> = { calc: 15 * MIN, fanout: 10 * MIN, driver: 15 * MIN, density: 60 * MIN, revoke: 20 * MIN, e2e: 15 * MIN, flows: 15 * MIN, openstack: 40 * MIN };

export const SIZES: Record<SizeName, BenchSize> = {
  full: {
    calc: { hosts: 1000, endpointsPerHost: 100, profiles: 2000, rulesPerProfile: 10, updates: 5000 },
    // The controller's default admission (burst 400, 200/s): 1,000 streams at once are refused in part and retry.
    fanout: { streams: 1000, samples: 50 },
    driver: { endpoints: 1000, profiles: 100, rulesPerProfile: 10, incrementalSamples: 30 },
    density: { sizes: [1000, 3000, 6000], backends: ["nft", "legacy"], samples: (n) => (n >= 6000 ? 10 : 20), memory: [100_000, 300_000], baseline: 300 },
    revoke: { endpoints: 6000, conntrack: 100_000, samples: 10 },
    e2e: { samples: 200, endpoints: 200 },
    flows: { samples: 40, floodSeconds: 20, probes: 50 },
    openstack: { sizes: [100, 1000], samples: 20 },
    deadlineS: generous,
  },
  quick: {
    calc: { hosts: 200, endpointsPerHost: 100, profiles: 500, rulesPerProfile: 10, updates: 2000 },
    fanout: { streams: 1000, samples: 20 },
    driver: { endpoints: 1000, profiles: 100, rulesPerProfile: 10, incrementalSamples: 10 },
    density: { sizes: [1000, 3000], backends: ["nft", "legacy"], samples: () => 10, memory: [100_000], baseline: 300 },
    revoke: { endpoints: 1000, conntrack: 100_000, samples: 5 },
    e2e: { samples: 50, endpoints: 50 },
    flows: { samples: 15, floodSeconds: 8, probes: 20 },
    openstack: { sizes: [100, 500], samples: 20 },
    deadlineS: generous,
  },
  ci: {
    calc: { hosts: 20, endpointsPerHost: 20, profiles: 50, rulesPerProfile: 5, updates: 200 },
    // Admission tightened (burst 20, 100/s; the default burst of 400 would
    // admit 200 streams at once): most hellos are refused at first, so the
    // retry path runs on every CI run.
    fanout: { streams: 200, samples: 5, admission: { helloBurst: 20, helloRate: 100 } },
    driver: { endpoints: 50, profiles: 10, rulesPerProfile: 5, incrementalSamples: 3 },
    // One backend: the driver section already runs legacy.
    density: { sizes: [60], backends: ["nft"], samples: () => 2, memory: [2000], baseline: 30 },
    revoke: { endpoints: 60, conntrack: 2000, samples: 2 },
    e2e: { samples: 5, endpoints: 10 },
    flows: { samples: 3, floodSeconds: 2, probes: 5, counterWaitS: 0 },
    // Most of this section is starting Neutron (~17 s; three times: one
    // server for the change feeds, one per size for the ML2 case) and
    // creating through its API.
    openstack: { sizes: [3, 6], samples: 1, polls: 3, ml2IdleS: 2 },
    deadlineS: { calc: 60, fanout: 90, driver: 90, density: 120, revoke: 90, e2e: 90, flows: 120, openstack: 300 },
  },
};
