// A controller stand-in for driver unit tests: one gRPC server on a free
// loopback port, one sync stream at a time; the test writes batches when it
// chooses and reads everything the driver sent.
import * as grpc from "@grpc/grpc-js";
import { updateToPb } from "../../services/contract/sync-wire.js";
import type { HostUpdate } from "../../services/calc/index.js";
import { DataplaneSyncServiceService, type SyncRequest, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";

export interface FakeController {
  address: string;
  connected(): boolean;
  /** A batch; `snapshot` makes it a whole (one-batch) snapshot. */
  send(revision: number, updates: HostUpdate[], snapshot?: boolean, opts?: { acksForContentOnly?: boolean }): void;
  /** Every message the driver sent, in order. */
  readonly received: SyncRequest[];
  /** The revisions of the driver's successful acknowledgements, in order. */
  acks(): number[];
  stop(): void;
}

export async function startFakeController(): Promise<FakeController> {
  let stream: grpc.ServerDuplexStream<SyncRequest, SyncResponse> | undefined;
  const received: SyncRequest[] = [];
  const server = new grpc.Server();
  server.addService(DataplaneSyncServiceService, {
    sync: (call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>) => {
      stream = call;
      call.on("data", (m: SyncRequest) => received.push(m));
      call.on("error", () => undefined);
    },
  });
  const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return {
    address: `127.0.0.1:${port}`,
    connected: () => stream !== undefined,
    send: (revision, updates, snapshot = false, opts = {}) =>
      stream!.write({ revision, snapshotStart: snapshot, inSync: snapshot, partial: false, acksForContentOnly: opts.acksForContentOnly ?? false, updates: updates.map(updateToPb) }),
    received,
    acks: () => received.flatMap((m) => (m.message?.$case === "applied" && m.message.value.ok ? [m.message.value.revision] : [])),
    stop: () => server.forceShutdown(),
  };
}
