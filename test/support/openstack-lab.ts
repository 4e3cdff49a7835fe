// The shared setup of the e2e tests that run palisade-openstack against the
// real neutron-server (DESIGN §11.9) on the namespace lab: Neutron, the lab's
// hypervisors, a controller on a unix socket, a driver per hypervisor (in
// sync), and `palisade-openstack watch` started on demand. Stopped in reverse.
import { execa, type ResultPromise } from "execa";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, inject } from "vitest";
import { createLab, type Lab } from "../lab/lab.js";
import { NeutronAdmin, startNeutron, type NeutronProcess, type StartNeutronOptions } from "../lab/neutron-process.js";
import { BIN, eventually, palisadectl, requireBuild, startControllerProcess, uniqueName } from "./binaries.js";

export interface OpenStackLab {
  dir: string;
  /** The controller's address, unix:… */
  addr: string;
  lab: Lab;
  neutron: NeutronProcess;
  api: NeutronAdmin;
  /** palisade-openstack watch against this Neutron (OS_TOKEN noauth), output to `log` in dir. */
  startWatch(args: string[], log?: string): ResultPromise;
  /** The endpoints palisadectl status reports, as "host/orchestrator/workload/id". */
  endpointKeys(): Promise<string[]>;
  /** palisadectl wait: every host has applied the current revision. */
  allApplied(): Promise<void>;
  stop(): Promise<void>;
}

export interface OpenStackLabOptions {
  /** Short name: the lab's namespace prefix and temp directory. */
  name: string;
  hypervisors: string[];
  /** Link the hypervisors (the first to each other one). */
  link?: boolean;
  neutron?: StartNeutronOptions;
}

export async function startOpenStackLab(opts: OpenStackLabOptions): Promise<OpenStackLab> {
  requireBuild();
  const prefix = `${uniqueName(opts.name)}-`;
  const dir = mkdtempSync(join(tmpdir(), `palisade-${opts.name}-`));
  const addr = `unix:${join(dir, "controller.sock")}`;
  const watches: ResultPromise[] = [];
  let controller: ResultPromise | undefined;
  let lab: Lab | undefined;
  let neutron: NeutronProcess | undefined;
  const stop = async () => {
    for (const w of watches) w.kill("SIGTERM");
    await Promise.all(watches);
    controller?.kill("SIGTERM");
    await controller;
    await lab?.destroy();
    await neutron?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    neutron = await startNeutron(opts.neutron);
    const api = new NeutronAdmin(neutron.url);
    lab = createLab(prefix);
    for (const hv of opts.hypervisors) await lab.addHypervisor(hv);
    if (opts.link) for (const hv of opts.hypervisors.slice(1)) await lab.link(opts.hypervisors[0]!, hv);
    controller = startControllerProcess({ etcd: inject("etcdUrl"), listen: `127.0.0.1:0,${addr}`, prefix: `/${prefix}os`, logFile: join(dir, "controller.log") });
    await eventually(async () => (await palisadectl(addr, ["status"])).code === 0, { what: "controller up" });
    for (const hv of opts.hypervisors) {
      lab.spawnIn(lab.hypervisors.get(hv)!.ns, process.execPath, [BIN.driver, "--insecure", "--controller", addr, "--hostname", hv], { logFile: join(dir, `driver-${hv}.log`) });
    }
    await eventually(async () => {
      const s = await palisadectl(addr, ["status", "-o", "json"]);
      return s.code === 0 && JSON.parse(s.stdout).hosts.filter((h: { in_sync: boolean }) => h.in_sync).length === opts.hypervisors.length;
    }, { what: "every driver in sync", timeoutMs: 30_000 });
    const theLab = lab;
    return {
      dir, addr, lab: theLab, neutron, api, stop,
      startWatch(args, log = "watch.log") {
        const w = execa(process.execPath, [BIN.openstack, "--insecure", "--controller", addr, "watch", "--neutron-url", neutron!.url, ...args], {
          reject: false, env: { OS_TOKEN: "noauth" }, stdout: { file: join(dir, log) }, stderr: { file: join(dir, log) },
        });
        watches.push(w);
        return w;
      },
      async endpointKeys() {
        const s = await palisadectl(addr, ["status", "-o", "json"]);
        return (JSON.parse(s.stdout).endpoints as { endpoint: string }[]).map((e) => e.endpoint);
      },
      async allApplied() {
        const w = await palisadectl(addr, ["wait", "--timeout", "30"]);
        expect(w.code, w.stderr).toBe(0);
      },
    };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}
