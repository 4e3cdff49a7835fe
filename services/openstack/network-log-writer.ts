// Neutron's logging API, the I/O part (DESIGN §11.13): follows the
// controller's flow record stream (FlowService.Watch) and appends, for each
// record of a port an enabled Neutron log selects, one JSON line to
// --network-log-file (networkLogLine, network-logs.ts). The selection is set
// by the watch loop after each read of /v2.0/log/logs.
//
// Bounded: the controller caps each watch's queue (a slow reader loses
// records, told in `dropped`); here nothing is queued but the file stream's
// own buffer, and a record is dropped and counted while that is behind. A
// broken stream is reopened after 1 s, doubling to 30 s; records sent while
// it was away are not replayed (counted only by the controller's drivers).
import * as grpc from "@grpc/grpc-js";
import { createWriteStream, type WriteStream } from "node:fs";
import type { Logger } from "pino";
import type { FlowServiceClient, WatchResponse } from "../contract/flow.js";
import { EMPTY_SELECTION, networkLogLine, type LogSelection } from "./network-logs.js";

export interface NetworkLogWriter {
  setSelection(sel: LogSelection): void;
  /** Closes and reopens the file (after logrotate moved it: SIGHUP). */
  reopen(): void;
  close(): Promise<void>;
}

export interface NetworkLogWriterOptions {
  flows: FlowServiceClient;
  /** The file ("-": standard output). */
  file: string;
  logger: Logger;
  /** Counted per record: written, dropped. */
  onRecord?: (result: "written" | "dropped", n: number) => void;
  /** After the file cannot be written, how soon it is opened again (ms); default 5 s. */
  reopenMs?: number;
}

export function startNetworkLogWriter(o: NetworkLogWriterOptions): NetworkLogWriter {
  let selection: LogSelection = EMPTY_SELECTION;
  let closed = false;
  let out: WriteStream | NodeJS.WriteStream;
  /**
   * The file could not be opened or written: records are dropped and
   * counted (not counted as written into a stream that is gone) until it
   * is opened again, every `reopenMs`.
   */
  let failed = false;
  let reopenTimer: NodeJS.Timeout | undefined;
  const open = () => {
    reopenTimer = undefined;
    if (o.file === "-") {
      out = process.stdout;
      return;
    }
    const f = createWriteStream(o.file, { flags: "a" });
    f.on("open", () => {
      if (out !== f || !failed) return;
      failed = false;
      o.logger.info({ file: o.file }, "network log file: writing again");
    });
    f.on("error", (err) => {
      if (out !== f || closed) return;
      if (!failed) o.logger.error({ err: err.message, file: o.file, retryInMs: o.reopenMs ?? 5_000 }, "network log file: cannot write; records are dropped (counted) until it can be opened again");
      failed = true;
      clearTimeout(reopenTimer);
      reopenTimer = setTimeout(open, o.reopenMs ?? 5_000);
      reopenTimer.unref();
    });
    out = f;
  };
  open();

  let stream: grpc.ClientReadableStream<WatchResponse> | undefined;
  let delay = 1_000;
  let retry: NodeJS.Timeout | undefined;
  let upSince = 0;
  const connect = () => {
    retry = undefined;
    if (closed) return;
    const s = o.flows.watch({ filter: undefined });
    stream = s;
    upSince = Date.now();
    let ended = false;
    const again = (why: string) => {
      if (ended || closed) return;
      ended = true;
      if (stream === s) stream = undefined;
      // A stream that lived 10 s was healthy: start the backoff over.
      if (Date.now() - upSince > 10_000) delay = 1_000;
      o.logger.warn({ err: why, retryInMs: delay }, "network log: the controller's flow stream ended; reopening");
      retry = setTimeout(connect, delay);
      retry.unref();
      delay = Math.min(delay * 2, 30_000);
    };
    s.on("data", (m: WatchResponse) => {
      if (m.dropped > 0) o.onRecord?.("dropped", m.dropped);
      if (selection.byPort.size === 0) return;
      let written = 0;
      let dropped = 0;
      for (const r of m.records) {
        const line = networkLogLine(r, selection);
        if (!line) continue;
        // Never queue behind a slow file: drop and count.
        if (failed || out.destroyed || ("writableNeedDrain" in out && out.writableNeedDrain)) {
          dropped++;
          continue;
        }
        out.write(`${JSON.stringify(line)}\n`);
        written++;
      }
      if (written) o.onRecord?.("written", written);
      if (dropped) o.onRecord?.("dropped", dropped);
    });
    s.on("error", (err: grpc.ServiceError) => {
      if (closed && err.code === grpc.status.CANCELLED) return;
      again(err.message);
    });
    s.on("end", () => again("stream ended"));
  };
  connect();

  return {
    setSelection(sel) {
      selection = sel;
    },
    reopen() {
      if (o.file === "-") return;
      (out as WriteStream).end();
      open();
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      clearTimeout(reopenTimer);
      stream?.cancel();
      if (o.file !== "-" && !out.destroyed) await new Promise<void>((r) => (out as WriteStream).end(() => r()));
    },
  };
}
