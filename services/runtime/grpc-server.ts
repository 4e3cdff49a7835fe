// What every Palisade gRPC server shares: keepalive, the standard health
// service, server reflection (so grpcurl and load balancers work), and the
// mapping of our errors to gRPC status codes.
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { lstat, unlink } from "node:fs/promises";
import * as net from "node:net";
import { join } from "node:path";
import type { Logger } from "pino";
import { ValidationError, formatIssue } from "../model/index.js";
import { ApiError, errorDetailMetadata } from "../contract/errors.js";
import { packageRoot } from "./package-root.js";

export const SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
};

const PROTO_FILES = ["palisade/policy/v1/policy.proto", "palisade/sync/v1/sync.proto", "palisade/status/v1/status.proto"];

export function addStandardServices(server: grpc.Server, services: string[]): HealthImplementation {
  const health = new HealthImplementation({ "": "SERVING", ...Object.fromEntries(services.map((s) => [s, "SERVING"])) });
  health.addToServer(server);
  const pkg = loadSync(PROTO_FILES, { includeDirs: [join(packageRoot(), "proto")] });
  new ReflectionService(pkg).addToServer(server);
  return health;
}

/** Error details stay readable (and bounded, whatever the request): ~4 KB at most. */
export const MAX_ERROR_DETAILS = 4096;

function boundedIssues(err: ValidationError): string {
  let out = "";
  for (let i = 0; i < err.issues.length; i++) {
    const next = (out ? "; " : "") + formatIssue(err.issues[i]!);
    if (out.length + next.length > MAX_ERROR_DETAILS - 40) return `${out}; … and ${err.issues.length - i} more problem(s)`;
    out += next;
  }
  return out;
}

/** Maps any thrown error to a gRPC status; unexpected ones are logged. */
export function toServiceError(err: unknown, logger: Logger): Partial<grpc.StatusObject> {
  if (err instanceof ValidationError) return { code: grpc.status.INVALID_ARGUMENT, details: boundedIssues(err), metadata: errorDetailMetadata(err) };
  if (err instanceof ApiError) {
    const m = err.message;
    // etcd trouble is the operator's to fix, not a bug: a warning, once per call.
    if (err.etcdClass) logger.warn({ class: err.etcdClass, reason: m }, "etcd refused a request");
    return { code: grpc.status[err.code], details: m.length > MAX_ERROR_DETAILS ? `${m.slice(0, MAX_ERROR_DETAILS - 20)} … (truncated)` : m, metadata: errorDetailMetadata(err) };
  }
  logger.error({ err }, "internal error");
  return { code: grpc.status.INTERNAL, details: "internal error (see controller log)" };
}

/**
 * Wraps an async unary handler: resolves -> callback(null, value), throws ->
 * status; `observe` learns each call's status code name (metrics).
 */
export function unary<Req, Res>(
  logger: Logger, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>, observe?: (code: string) => void,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => { observe?.("OK"); callback(null, res); },
      (err) => {
        const st = toServiceError(err, logger);
        observe?.(grpc.status[st.code ?? grpc.status.UNKNOWN] ?? "UNKNOWN");
        callback(st as grpc.ServiceError);
      },
    );
  };
}

/** Routes grpc-js's own log lines through our structured logger. */
export function routeGrpcLogs(logger: Logger): void {
  grpc.setLogger({
    error: (...a: unknown[]) => logger.error({ component: "grpc" }, a.map(String).join(" ")),
    info: (...a: unknown[]) => logger.debug({ component: "grpc" }, a.map(String).join(" ")),
    debug: (...a: unknown[]) => logger.debug({ component: "grpc" }, a.map(String).join(" ")),
  } as unknown as Partial<Console>);
  grpc.setLogVerbosity(grpc.logVerbosity.ERROR);
}

export async function bindServer(server: grpc.Server, address: string, creds = grpc.ServerCredentials.createInsecure()): Promise<number> {
  if (address.startsWith("unix:")) await clearStaleUnixSocket(address.slice("unix:".length));
  return new Promise((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
}

/**
 * A process killed with SIGKILL leaves its Unix socket file behind, and
 * binding over it fails with EADDRINUSE: the restart after a crash would
 * fail. So before binding: a socket nobody listens on (connect refused) is
 * removed; a socket something answers on is never taken over (two
 * controllers would each serve half the clients); anything that is not a
 * socket is refused rather than deleted (a mistyped path must not destroy
 * a file).
 *
 * Two processes starting on the same stale path at the same instant can
 * still race (both probe, both unlink); that needs a lock, which a single
 * supervised controller per path does not.
 */
export async function clearStaleUnixSocket(path: string, probeTimeoutMs = 2_000): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new Error(`cannot listen on unix:${path}: ${(err as Error).message}`);
  }
  if (!st.isSocket()) throw new Error(`cannot listen on unix:${path}: the path exists and is not a socket (refusing to replace it)`);
  const probe = await new Promise<"live" | "stale" | string>((resolve) => {
    const s = net.connect({ path });
    const done = (r: string) => { clearTimeout(timer); s.destroy(); resolve(r); };
    // No answer at all (neither accept nor refusal) is not proof of death: keep it.
    const timer = setTimeout(() => done("live"), probeTimeoutMs);
    s.once("connect", () => done("live"));
    s.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED") done("stale");
      // A full accept queue answers EAGAIN: somebody is listening, just busy.
      else if (e.code === "EAGAIN") done("live");
      else done(`${e.code ?? ""} ${e.message}`.trim());
    });
  });
  if (probe === "live") throw new Error(`cannot listen on unix:${path}: another process is listening on unix:${path}`);
  if (probe !== "stale") throw new Error(`cannot listen on unix:${path}: cannot tell whether the existing socket is in use: ${probe}`);
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new Error(`cannot listen on unix:${path}: removing the stale socket failed: ${(err as Error).message}`);
  }
}

/** Graceful stop: refuse new calls, let running ones finish, then force after a grace period. */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
    server.tryShutdown(() => { clearTimeout(timer); resolve(); });
  });
}
