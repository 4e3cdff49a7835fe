// gRPC clients with promise-returning unary calls; every failure becomes the
// client's one error type, RpcError, rebuilt from the status (errors.ts).
import * as grpc from "@grpc/grpc-js";
import { RpcError, rpcErrorOf } from "./errors.js";
import { PolicyServiceClient } from "../gen/palisade/policy/v1/policy.js";
import { StatusServiceClient } from "../gen/palisade/status/v1/status.js";
import { FlowServiceClient } from "../gen/palisade/flow/v1/flow.js";

type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown;

/** Channel options every Palisade client uses (keepalive matching the servers' ping policy). */
export const CLIENT_OPTIONS: grpc.ClientOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
};

export { RpcError };

export function call<Req, Res>(client: grpc.Client, fn: Unary<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(rpcErrorOf(err, client.getChannel().getTarget()));
      else resolve(res);
    });
  });
}

export function createClients(address: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}) {
  const o = { ...CLIENT_OPTIONS, ...options };
  return {
    policy: new PolicyServiceClient(address, creds, o),
    status: new StatusServiceClient(address, creds, o),
    flows: new FlowServiceClient(address, creds, o),
    close() {
      this.policy.close();
      this.status.close();
      this.flows.close();
    },
  };
}
