// The driver's side of DataplaneSync: one stream to one controller replica
// at a time; on loss, jittered backoff and the next address in the list.
// The dataplane is never touched here: batches are handed to the driver.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { createBackoff, sleep } from "../../util/backoff.js";
import { CLIENT_OPTIONS } from "../../contract/clients.js";
import { DataplaneSyncServiceClient, type Hello, type SyncRequest, type SyncResponse } from "../../contract/sync.js";

export interface SyncClientOptions {
  controllers: string[];
  /** Channel credentials (mTLS); default plaintext. */
  credentials?: grpc.ChannelCredentials;
  hello: Hello;
  logger: Logger;
  onBatch(batch: SyncResponse): void;
  onConnected(address: string): void;
  onDisconnected(reason: string): void;
  heartbeatMs?: number;
  /** A stream silent this long (no batch, no heartbeat) is dropped and re-established; default 35 s. */
  silenceMs?: number;
  /**
   * The client for one connection attempt to `address`, and what to do with
   * it after the stream ended. Default: a channel of its own, closed after.
   * The soak (test/soak) shares channels between thousands of simulated hosts.
   */
  channel?: (address: string) => { client: DataplaneSyncServiceClient; release(): void };
}

export interface SyncClient {
  send(req: SyncRequest): void;
  readonly connected: boolean;
  stop(): void;
}

export function startSyncClient(opts: SyncClientOptions): SyncClient {
  const { logger } = opts;
  const abort = new AbortController();
  let call: grpc.ClientDuplexStream<SyncRequest, SyncResponse> | undefined;
  let connected = false;
  let index = Math.floor(Math.random() * opts.controllers.length);

  async function loop(): Promise<void> {
    const backoff = createBackoff({ initialMs: 250, maxMs: 15_000 });
    while (!abort.signal.aborted) {
      const address = opts.controllers[index % opts.controllers.length]!;
      index++;
      const { client, release } = opts.channel?.(address) ?? ownChannel(address, opts.credentials);
      let refused: "identity" | "version" | undefined;
      let onAbort: (() => void) | undefined;
      const reason = await new Promise<string>((resolve) => {
        const c = client.sync();
        call = c;
        let gotData = false;
        // The controller sends at least a heartbeat every 10 s: silence means
        // a dead peer that TCP and keepalive have not noticed yet.
        let watchdog: NodeJS.Timeout | undefined;
        const arm = () => {
          clearTimeout(watchdog);
          watchdog = setTimeout(() => { c.cancel(); resolve(`${address}: silent for ${opts.silenceMs ?? 35_000} ms`); }, opts.silenceMs ?? 35_000);
        };
        arm();
        c.on("close", () => clearTimeout(watchdog));
        c.on("data", (msg: SyncResponse) => {
          arm();
          if (!gotData) {
            gotData = true;
            connected = true;
            backoff.reset();
            opts.onConnected(address);
          }
          opts.onBatch(msg);
        });
        c.on("error", (err: grpc.ServiceError) => {
          refused = err.code === grpc.status.PERMISSION_DENIED || err.code === grpc.status.UNAUTHENTICATED ? "identity"
            : err.code === grpc.status.FAILED_PRECONDITION ? "version" : undefined;
          resolve(`${address}: ${err.details || err.message}`);
        });
        c.on("end", () => resolve(`${address}: stream ended`));
        c.write({ message: { $case: "hello", value: opts.hello } });
        onAbort = () => c.cancel();
        abort.signal.addEventListener("abort", onAbort, { once: true });
      });
      // One listener per connection attempt would pile up (and keep each old
      // call alive) on a driver that reconnects for days.
      if (onAbort) abort.signal.removeEventListener("abort", onAbort);
      call = undefined;
      release();
      if (connected) opts.onDisconnected(reason);
      connected = false;
      if (abort.signal.aborted) return;
      const delay = backoff.next();
      // A refusal will not go away by itself (wrong certificate for this host,
      // or a certificate without the host role): say so loudly, keep retrying.
      if (refused === "identity") logger.error({ reason, retryInMs: delay }, "controller refused this host: check --hostname against the certificate's CN and role; rules stay as they are");
      // The controller needs something this driver does not have (DESIGN
      // §6.2): no update arrives until the driver is upgraded.
      else if (refused === "version") logger.error({ reason, retryInMs: delay }, "controller refused this driver as too old: upgrade palisade-driver; rules stay as they are and follow no policy change meanwhile");
      else logger.warn({ reason, retryInMs: delay }, "controller stream lost; keeping current rules and reconnecting");
      await sleep(delay, abort.signal);
    }
  }

  const heartbeat = setInterval(() => {
    if (connected) call?.write({ message: { $case: "heartbeat", value: { unixMs: Date.now() } } });
  }, opts.heartbeatMs ?? 10_000);
  heartbeat.unref();
  void loop();

  return {
    get connected() { return connected; },
    send(req) {
      if (connected) call?.write(req);
    },
    stop() {
      clearInterval(heartbeat);
      abort.abort();
    },
  };
}

function ownChannel(address: string, credentials: grpc.ChannelCredentials | undefined) {
  const client = new DataplaneSyncServiceClient(address, credentials ?? grpc.credentials.createInsecure(), CLIENT_OPTIONS);
  return { client, release: () => client.close() };
}
