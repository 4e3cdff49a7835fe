// A host moves from replica A to replica B (a failover, or a reconnect that
// lands elsewhere). A's clean-up — the old stream closing, A shutting down —
// must not delete the status B now keeps for that host.
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { DataplaneSyncServiceClient, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type T = Awaited<ReturnType<typeof startTestController>>;
const started: T[] = [];

function connect(t: T, hostname: string) {
  const client = new DataplaneSyncServiceClient(t.address, grpc.credentials.createInsecure());
  const stream = client.sync();
  let synced = false;
  stream.on("data", (b: SyncResponse) => { if (b.inSync) synced = true; });
  stream.on("error", () => undefined);
  stream.write({ message: { $case: "hello", value: { hostname, driverVersion: "t", ipv6: true, iptablesBackend: "nft", features: [...DRIVER_FEATURES] } } });
  return {
    synced: () => synced,
    applied: (revision: number) => stream.write({ message: { $case: "applied", value: { revision, ok: true, error: "", durationMs: 1, chainsWritten: 0, ipsetLines: 0 } } }),
    close() { stream.cancel(); client.close(); },
  };
}

const hostOn = async (t: T, host: string) => (await call(t.clients.status, t.clients.status.getStatus, {})).hosts.find((h) => h.hostname === host);

describe("status ownership across replicas", () => {
  afterAll(async () => { for (const t of started) await t.stop().catch(() => undefined); });

  it("the old replica's clean-up leaves the new replica's status alone", async () => {
    const prefix = `/${uniqueName("own")}`;
    const A = await startTestController({ prefix });
    const B = await startTestController({ prefix });
    started.push(A, B);
    const a = connect(A, "hv-move");
    await eventually(async () => a.synced(), { what: "A snapshot" });
    a.applied(1);
    await eventually(async () => (await hostOn(B, "hv-move"))?.inSync, { what: "status via A" });
    // The host reconnects to B, then its old stream to A goes away, then A stops.
    const b = connect(B, "hv-move");
    await eventually(async () => b.synced(), { what: "B snapshot" });
    b.applied(2);
    await eventually(async () => (await hostOn(B, "hv-move"))?.appliedRevision === 2, { what: "status via B" });
    a.close();
    await new Promise((r) => setTimeout(r, 300));
    await A.stop();
    await new Promise((r) => setTimeout(r, 300));
    const h = await hostOn(B, "hv-move");
    expect(h?.connected).toBe(true);
    expect(h?.appliedRevision).toBe(2);
    b.close();
  });
});
