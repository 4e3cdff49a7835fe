// The quickstart behind `npm start`: a local etcd (data in .quickstart/),
// a controller, and a driver in a demo hypervisor namespace with three
// workloads behind tap veths. Loads deploy/examples/db-user.yaml, shows one
// connection admitted and one refused, then prints status until Ctrl-C and
// removes everything it created. It never touches the machine's own
// firewall: all rules live inside the demo namespaces.
import { execa, type ResultPromise } from "execa";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../services/runtime/package-root.js";
import { startEtcd, freePort, type EtcdProcess } from "../../test/lab/etcd-process.js";
import { createLab, removeStaleNamespaces, type Lab } from "../../test/lab/lab.js";

const root = packageRoot();
const state = join(root, ".quickstart");
const bin = (n: string) => join(root, "dist/services", n, "main.js");
const PREFIX = "pal-demo-";
const say = (s: string) => process.stdout.write(`${s}\n`);

let etcd: EtcdProcess | undefined;
let controller: ResultPromise | undefined;
let lab: Lab | undefined;
let stopping = false;
let signals = 0;

async function ctl(addr: string, args: string[]) {
  return execa(process.execPath, [bin("cli"), "--insecure", "--controller", addr, ...args], { reject: false });
}

async function shutdown(code: number): Promise<void> {
  // Ctrl-C reaches us twice (the terminal's process group, and npm
  // forwarding it): repeated signals must not cut the cleanup short.
  if (stopping) {
    if (++signals >= 3) process.exit(code);
    return;
  }
  stopping = true;
  say("\nstopping: driver, controller, etcd; removing the demo namespaces");
  await lab?.destroy();
  if (controller) {
    controller.kill("SIGTERM");
    await controller;
  }
  await etcd?.stop();
  say("done.");
  process.exit(code);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the quickstart creates network namespaces: run it as root");
  process.on("SIGINT", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));
  const stale = await removeStaleNamespaces(PREFIX);
  if (stale.length) say(`removed namespaces left by an earlier run: ${stale.join(" ")}`);
  rmSync(join(state, "etcd"), { recursive: true, force: true });
  mkdirSync(state, { recursive: true });

  etcd = await startEtcd({ dataDir: join(state, "etcd"), name: "palisade-demo", logFile: join(state, "etcd.log") });
  say(`etcd          ${etcd.url} (pid ${etcd.pid}, data in .quickstart/etcd)`);

  const port = await freePort().then(async (p) => ((await isFree(50051)) ? 50051 : p));
  const addr = `127.0.0.1:${port}`;
  const socket = join(state, "controller.sock");
  rmSync(socket, { force: true });
  controller = execa(process.execPath, [bin("controller"), "--insecure", "--etcd-endpoints", etcd.url, "--listen", `${addr},unix:${socket}`], {
    reject: false, stdout: { file: join(state, "controller.log") }, stderr: { file: join(state, "controller.log") },
  });
  await waitFor(async () => (await ctl(addr, ["status"])).exitCode === 0, "controller");
  say(`controller    ${addr} (pid ${controller.pid}, log .quickstart/controller.log)`);

  lab = createLab(PREFIX);
  const hv = await lab.addHypervisor("hv1");
  await lab.addWorkload("hv1", { name: "db-1", iface: "tapdb1", host: 10, mac: "02:00:00:00:00:01" });
  await lab.addWorkload("hv1", { name: "app-1", iface: "tapapp1", host: 20, mac: "02:00:00:00:00:02" });
  await lab.addWorkload("hv1", { name: "web-1", iface: "tapweb1", host: 30, mac: "02:00:00:00:00:03" });
  await lab.listen("db-1", [5432]);
  const driver = lab.spawnIn(hv.ns, process.execPath, [bin("driver"), "--insecure", "--controller", `unix:${socket}`, "--hostname", "hv1"], { logFile: join(state, "driver.log") });
  say(`driver        in namespace ${hv.ns} (pid ${driver.pid}, log .quickstart/driver.log)`);
  say(`workloads     db-1 198.18.1.10  app-1 198.18.1.20  web-1 198.18.1.30  (namespaces ${PREFIX}*)`);

  const applied = await ctl(addr, ["apply", "-f", join(root, "deploy/examples/db-user.yaml")]);
  if (applied.exitCode !== 0) throw new Error(String(applied.stderr));
  say(`\n$ palisadectl apply -f deploy/examples/db-user.yaml\n${applied.stdout}`);
  const waited = await ctl(addr, ["wait", "--timeout", "30"]);
  if (waited.exitCode !== 0) throw new Error(String(waited.stderr));
  say(`$ palisadectl wait\n${waited.stdout}`);

  const ok = await lab.probeTcp("app-1", "db-1", 5432);
  const no = await lab.probeTcp("web-1", "db-1", 5432);
  say(`app-1 (tag db-user) -> db-1:5432   ${ok === "open" ? "ADMITTED" : `unexpected: ${ok}`}`);
  say(`web-1 (no db-user)  -> db-1:5432   ${no === "timeout" ? "REFUSED (dropped)" : `unexpected: ${no}`}`);
  // What the dataplane reported dropping, and what decided it (DESIGN §6.12):
  // the driver's reader sends a record within a window of about a second.
  let flows = "";
  await waitFor(async () => {
    flows = String((await ctl(addr, ["flows", "--verdict", "deny", "--endpoint", "hv1/demo/db-1/eth0"])).stdout);
    return flows.includes("198.18.1.30");
  }, "the refused connection's flow record").catch(() => { flows ||= "(no flow record yet: see .quickstart/driver.log)\n"; });
  say(`\n$ palisadectl flows --verdict deny --endpoint hv1/demo/db-1/eth0\n${flows}`);
  say(`\nTry it yourself in another terminal (the demo is plaintext; production uses mTLS):\n  export PALISADE_INSECURE=1\n${port === 50051 ? "" : `  export PALISADE_CONTROLLER=${addr}\n`}  palisadectl get endpoints\n  palisadectl status --watch\n  palisadectl flows --watch\n` +
    `  ip netns exec ${hv.ns} iptables-save | grep pal-\n\nPrinting status every 10 s; Ctrl-C stops everything.\n`);
  for (;;) {
    const s = await ctl(addr, ["status"]);
    say(String(s.stdout || s.stderr));
    await new Promise((r) => setTimeout(r, 10_000));
  }
}

async function isFree(port: number): Promise<boolean> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

async function waitFor(fn: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up within 30s (see .quickstart/)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

main().catch(async (err) => {
  process.stderr.write(`quickstart failed: ${(err as Error).message}\n`);
  await shutdown(1);
});
