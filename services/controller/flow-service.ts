// palisade.flow.v1.FlowService (DESIGN §5.9): List and Watch over this
// replica's recent window of flow records (flow-store.ts). Filters are
// validated; List answers are capped; Watch sessions are capped in number
// and each has a bounded queue (a slow client loses records, counted).
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { FlowFilter, FlowRecord, FlowServiceServer, WatchRequest, WatchResponse } from "../gen/palisade/flow/v1/flow.js";
import { ID_RE, parseEndpointKey } from "../model/index.js";
import { ApiError } from "../contract/errors.js";
import { toServiceError } from "../runtime/grpc-server.js";
import { FLOW_LIMITS, type FlowFilterSpec, type FlowStore } from "./flow-store.js";

/** A filter or limit the service refuses (INVALID_ARGUMENT, one line: DESIGN §3.7). */
const bad = (reason: string) => new ApiError("INVALID_ARGUMENT", reason);

function filterOf(f: FlowFilter | undefined): FlowFilterSpec {
  const spec: FlowFilterSpec = {};
  if (!f) return spec;
  if (f.host) {
    if (!ID_RE.test(f.host) || f.host.length > 253) throw bad("filter.host: not a valid host name");
    spec.host = f.host;
  }
  if (f.endpoint) {
    if (f.endpoint.length > 700 || !parseEndpointKey(f.endpoint)) throw bad("filter.endpoint: must be HOST/ORCH/WORKLOAD/ID");
    spec.endpoint = f.endpoint;
  }
  if (f.verdict) {
    if (f.verdict !== "allow" && f.verdict !== "deny") throw bad("filter.verdict: must be allow or deny");
    spec.verdict = f.verdict;
  }
  if (f.sinceUnixMs) {
    if (f.sinceUnixMs < 0) throw bad("filter.since_unix_ms: must not be negative");
    spec.sinceUnixMs = f.sinceUnixMs;
  }
  return spec;
}

export function createFlowService(opts: { store: FlowStore; logger: Logger; onWatchDropped?: (n: number) => void }): FlowServiceServer {
  const { store } = opts;
  return {
    list(call, callback) {
      try {
        const filter = filterOf(call.request.filter);
        const limit = call.request.limit || FLOW_LIMITS.listDefault;
        if (limit > FLOW_LIMITS.listMax) throw bad(`limit: at most ${FLOW_LIMITS.listMax}`);
        callback(null, { records: store.list(filter, limit), dropped: store.dropped });
      } catch (e) {
        callback(toServiceError(e, opts.logger));
      }
    },

    watch(call: grpc.ServerWritableStream<WatchRequest, WatchResponse>) {
      let filter: FlowFilterSpec;
      try {
        filter = filterOf(call.request.filter);
      } catch (e) {
        call.emit("error", { metadata: new grpc.Metadata(), ...toServiceError(e, opts.logger) });
        return;
      }
      let queue: FlowRecord[] = [];
      let dropped = 0;
      let blocked = false;
      let timer: NodeJS.Timeout | undefined;
      const send = () => {
        timer = undefined;
        if (blocked || (queue.length === 0 && dropped === 0)) return;
        const msg: WatchResponse = { records: queue, dropped };
        queue = [];
        dropped = 0;
        // Back-pressure: stop writing until the client has read; the queue
        // meanwhile is capped (the overflow is counted and told).
        if (!call.write(msg)) {
          blocked = true;
          call.once("drain", () => { blocked = false; send(); });
        }
      };
      const unsubscribe = store.watch(filter, (r) => {
        if (queue.length >= FLOW_LIMITS.watchQueue) {
          dropped++;
          opts.onWatchDropped?.(1);
        } else queue.push(r);
        // Batched: one message per 100 ms at most, not one per record.
        timer ??= setTimeout(send, 100);
      });
      if (!unsubscribe) {
        call.emit("error", { metadata: new grpc.Metadata(), ...toServiceError(new ApiError("RESOURCE_EXHAUSTED", `too many flow watches on this controller (${FLOW_LIMITS.watchers})`), opts.logger) });
        return;
      }
      // An empty first message: the client knows the watch is established.
      call.write({ records: [], dropped: 0 });
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        unsubscribe();
      };
      call.on("cancelled", end);
      call.on("close", end);
      call.on("error", end);
    },
  };
}
