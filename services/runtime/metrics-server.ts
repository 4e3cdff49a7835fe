// The HTTP side of every daemon (--metrics-listen): Prometheus metrics,
// /healthz (the process is up) and /readyz (it is doing its job: the
// controller has loaded the model and reaches etcd; the driver is in sync).
import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import { Registry, collectDefaultMetrics } from "prom-client";

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: {
  listen: string; registry: Registry; ready: () => Promise<{ ok: boolean; detail: string }>; logger: Logger;
}): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405).end();
      return;
    }
    if (path === "/metrics") {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.registry.contentType }).end(text),
        (err) => { opts.logger.warn({ err: (err as Error).message }, "metrics collection failed"); res.writeHead(500).end(); },
      );
    } else if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      opts.ready().then(
        (r) => res.writeHead(r.ok ? 200 : 503, { "content-type": "text/plain" }).end(`${r.detail}\n`),
        (err) => res.writeHead(503, { "content-type": "text/plain" }).end(`${(err as Error).message}\n`),
      );
    } else res.writeHead(404).end();
  });
  const [host, portText] = splitHostPort(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(portText), host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  opts.logger.info({ listen: opts.listen, port }, "metrics and health on HTTP");
  return {
    port,
    close: () => new Promise((r) => {
      server.close(() => r());
      // Keep-alive or in-flight scrapes must not hold a shutdown.
      server.closeAllConnections();
    }),
  };
}

/** "HOST:PORT" or "[V6]:PORT" -> [host, port] (the listen flags' shape). */
export function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(":");
  return [s.slice(0, i).replace(/^\[|\]$/g, ""), s.slice(i + 1)];
}

/** A registry with the process metrics every Palisade binary exports (`<prefix>process_…`). */
export function createRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}process_` });
  return registry;
}
