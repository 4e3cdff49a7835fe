// A model of several MiB goes through etcd in both directions the controller
// uses: one watch event batch (a 3,000-document apply) and the initial load of
// a second replica. Both used to exceed grpc-js's 4 MiB default receive limit
// on the etcd client (RESOURCE_EXHAUSTED) — at ~20,000 endpoints a controller
// could not start.
import { afterAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type T = Awaited<ReturnType<typeof startTestController>>;
const started: T[] = [];
afterAll(async () => { for (const t of started) await t.stop().catch(() => undefined); });

function profiles(from: number, n: number) {
  return Array.from({ length: n }, (_, i) => ({
    kind: "Profile", id: `big-${from + i}`, tags: [`big-${from + i}`],
    inbound_rules: Array.from({ length: 12 }, (_, r) => ({ action: "allow", protocol: "tcp", src_net: `198.18.${r}.0/24`, dst_ports: [1000 + r, `${2000 + r}:${3000 + r}`] })),
    outbound_rules: [{ action: "allow" }],
  }));
}

describe("a model larger than 4 MiB", () => {
  it("is applied, watched and loaded by a fresh replica", async () => {
    const prefix = `/${uniqueName("big")}`;
    const a = await startTestController({ prefix });
    started.push(a);
    let bytes = 0;
    for (let from = 0; from < 6000; from += 3000) {
      const documents = parseDocuments(profiles(from, 3000)).map(documentToPb);
      bytes += JSON.stringify(profiles(from, 3000)).length;
      await call(a.clients.policy, a.clients.policy.apply, { deletes: [], documents }, 60_000);
    }
    expect(bytes).toBeGreaterThan(6 * 1024 * 1024);
    // The running replica saw both batches through its watch.
    await eventually(async () => [...a.controller.graph.profileIds()].length === 6000, { what: "watch delivered 6,000 profiles", timeoutMs: 60_000 });
    // A new replica loads it all at start.
    const b = await startTestController({ prefix });
    started.push(b);
    expect([...b.controller.graph.profileIds()].length).toBe(6000);
  }, 120_000);
});
