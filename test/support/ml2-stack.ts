// The stack the ML2 end-to-end tests share (DESIGN §11.11): Debian's real
// neutron-server with the Palisade ML2 mechanism driver loaded, a namespace
// lab with one hypervisor (hv1), the controller, a driver on hv1, and
// palisade-openstack watch serving the ML2 endpoint. The adapter's own polls
// are every 10 minutes, so only Neutron's change notices make it poll sooner.
// Everything it starts is stopped by stop(), by PID.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../lab/etcd-process.js";
import { createLab, type Lab } from "../lab/lab.js";
import { NeutronAdmin, startNeutron, type NeutronProcess } from "../lab/neutron-process.js";
import { BIN, eventually, palisadectl, requireBuild, startControllerProcess } from "./binaries.js";

export interface Ml2Stack {
  /** The test's own temporary directory: logs, the controller's socket. */
  dir: string;
  /** The controller's address (a unix socket in dir). */
  addr: string;
  lab: Lab;
  neutron: NeutronProcess;
  api: NeutronAdmin;
  /** The driver on hv1 now running. */
  readonly driver: ReturnType<Lab["spawnIn"]>;
  startDriver(log: string): void;
  /** palisade-openstack watch with the ML2 endpoint (undefined while stopped). */
  readonly watch: ResultPromise | undefined;
  startWatch(log: string): void;
  stopWatch(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts the stack. `seed` runs once Neutron is up and before the controller
 * and adapter start (what is there when the adapter's first sync runs).
 */
export async function startMl2Stack(opts: {
  prefix: string; etcd: string; seed?: (api: NeutronAdmin) => Promise<void>;
  /** The Neutron URL the adapter is given (e.g. a proxy in front of `neutronUrl`); default Neutron's own. */
  adapterNeutronUrl?: (neutronUrl: string) => Promise<string>;
  networkLog?: boolean; watchArgs?: (dir: string) => string[]; driverArgs?: string[];
}): Promise<Ml2Stack> {
  requireBuild();
  const dir = mkdtempSync(join(tmpdir(), "palisade-os-ml2-"));
  const addr = `unix:${join(dir, "controller.sock")}`;
  const ml2Listen = `127.0.0.1:${await freePort()}`;
  let neutron: NeutronProcess | undefined;
  let lab: Lab | undefined;
  let controller: ResultPromise | undefined;
  let driver: ReturnType<Lab["spawnIn"]> | undefined;
  let watch: ResultPromise | undefined;

  const stopWatch = async () => {
    const w = watch;
    watch = undefined;
    w?.kill("SIGTERM");
    await w;
  };
  const stop = async () => {
    await stopWatch();
    controller?.kill("SIGTERM");
    await controller;
    await lab?.destroy();
    await neutron?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    neutron = await startNeutron({ palisadeAdapterUrl: `http://${ml2Listen}`, networkLog: opts.networkLog });
    const api = new NeutronAdmin(neutron.url);
    const l = createLab(opts.prefix);
    lab = l;
    await l.addHypervisor("hv1");
    await opts.seed?.(api);

    controller = startControllerProcess({ etcd: opts.etcd, listen: `127.0.0.1:0,${addr}`, prefix: `/${opts.prefix}ml2`, logFile: join(dir, "controller.log") });
    await eventually(async () => (await palisadectl(addr, ["status"])).code === 0, { what: "controller up" });
    const startDriver = (log: string) => {
      driver = l.spawnIn(l.hypervisors.get("hv1")!.ns, process.execPath, [BIN.driver, "--insecure", "--controller", addr, "--hostname", "hv1", ...(opts.driverArgs ?? [])], { logFile: join(dir, log) });
    };
    startDriver("driver-hv1.log");
    await eventually(async () => {
      const s = await palisadectl(addr, ["status", "-o", "json"]);
      return s.code === 0 && JSON.parse(s.stdout).hosts.some((h: { hostname: string; in_sync: boolean }) => h.hostname === "hv1" && h.in_sync);
    }, { what: "hv1's driver in sync", timeoutMs: 30_000 });
    const n = neutron;
    const adapterUrl = opts.adapterNeutronUrl ? await opts.adapterNeutronUrl(n.url) : n.url;
    const startWatch = (log: string) => {
      watch = execa(process.execPath, [BIN.openstack, "--insecure", "--controller", addr, "watch", "--neutron-url", adapterUrl,
        "--interval", "600", "--resync-interval", "600", "--deletion-check-interval", "600", "--ml2-listen", ml2Listen, "--ml2-down-after", "1", ...(opts.watchArgs?.(dir) ?? [])], {
        reject: false, env: { OS_TOKEN: "noauth" }, stdout: { file: join(dir, log) }, stderr: { file: join(dir, log) },
      });
    };
    startWatch("watch.log");
    await eventually(async () => (await fetch(`http://${ml2Listen}/healthz`).then((r) => r.ok, () => false)), { what: "the adapter's ML2 endpoint", timeoutMs: 30_000 });
    return {
      dir, addr, lab: l, neutron: n, api,
      get driver() { return driver!; },
      startDriver,
      get watch() { return watch; },
      startWatch,
      stopWatch,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
