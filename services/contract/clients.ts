// gRPC clients with promise-returning unary calls; one place that turns
// gRPC failures into an ApiError-style one-line message for CLIs.
import * as grpc from "@grpc/grpc-js";
import { SERVER_ERROR_METADATA } from "./errors.js";
import { PolicyServiceClient } from "../gen/palisade/policy/v1/policy.js";
import { StatusServiceClient } from "../gen/palisade/status/v1/status.js";

type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown;

/** Channel options every Palisade client uses (keepalive matching the servers' ping policy). */
export const CLIENT_OPTIONS: grpc.ClientOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
};

export class RpcError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
    this.name = "RpcError";
  }
}

/**
 * The controller decided this status (e.g. UNAVAILABLE "etcd unavailable: …")
 * rather than the transport failing: print its reason as is.
 */
export function fromServer(err: { metadata?: grpc.Metadata }): boolean {
  return (err.metadata?.get(SERVER_ERROR_METADATA).length ?? 0) > 0;
}

export function call<Req, Res>(client: grpc.Client, fn: Unary<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) {
        const what = err.code === grpc.status.PERMISSION_DENIED
          ? `${err.details} (the certificate's role decides: admin changes policy, reader reads)`
          : (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) && !fromServer(err)
          ? `cannot reach the controller at ${client.getChannel().getTarget()}: ${err.details}`
          : err.details || err.message;
        reject(new RpcError(err.code, what));
      } else resolve(res);
    });
  });
}

export function createClients(address: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}) {
  const o = { ...CLIENT_OPTIONS, ...options };
  return {
    policy: new PolicyServiceClient(address, creds, o),
    status: new StatusServiceClient(address, creds, o),
    close() {
      this.policy.close();
      this.status.close();
    },
  };
}
