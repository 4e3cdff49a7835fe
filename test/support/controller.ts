// An in-process controller (the real gRPC server and etcd store) on a free
// loopback port with a unique etcd prefix, plus typed clients.
import * as grpc from "@grpc/grpc-js";
import { inject } from "vitest";
import { call, createClients } from "../../services/contract/clients.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { TlsMaterial } from "../../services/runtime/tls.js";
import { startController, type Controller, type ControllerOptions } from "../../services/controller/controller.js";
import type { AdmissionOptions } from "../../services/controller/stream-admission.js";
import { uniqueName } from "./binaries.js";

let seq = 0;

export async function startTestController(opts: {
  workloadToHost?: "drop" | "accept"; prefix?: string; socket?: string; heartbeatMs?: number;
  /** mTLS on the server, and the credentials the returned clients use. */
  tls?: TlsMaterial; clientCredentials?: grpc.ChannelCredentials; metricsListen?: string;
  admission?: AdmissionOptions; statusMinIntervalMs?: number;
  /** Another etcd than the run's shared one (limit, alarm and cluster tests start their own). */
  etcdEndpoints?: string[];
  /** Anything else startController takes (e.g. compaction settings). */
  extra?: Partial<ControllerOptions>;
} = {}) {
  const prefix = opts.prefix ?? `/${uniqueName("c")}-${process.pid}-${seq++}`;
  const controller: Controller = await startController({
    etcdEndpoints: opts.etcdEndpoints ?? [inject("etcdUrl")],
    // A Unix socket reaches drivers inside network namespaces.
    listen: opts.socket ? `127.0.0.1:0,unix:${opts.socket}` : "127.0.0.1:0",
    etcdPrefix: prefix,
    logger: createLogger({ name: "test-controller", level: process.env.PALISADE_TEST_LOG ?? "silent" }),
    statusTtlSeconds: 5,
    workloadToHost: opts.workloadToHost,
    shutdownGraceMs: 500,
    heartbeatMs: opts.heartbeatMs,
    tls: opts.tls,
    metricsListen: opts.metricsListen,
    admission: opts.admission,
    statusMinIntervalMs: opts.statusMinIntervalMs,
    ...opts.extra,
  });
  const address = `127.0.0.1:${controller.port}`;
  const clients = createClients(address, opts.clientCredentials);
  return {
    controller, address, clients, prefix,
    policy: <Req, Res>(fn: (req: Req, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown, req: Req) => call(clients.policy, fn, req),
    async stop() {
      clients.close();
      await controller.stop();
    },
  };
}
