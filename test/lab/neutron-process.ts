// A real OpenStack Neutron server (Debian's neutron-server, 21.0.0 Zed) for
// the OpenStack tests and the bench: loopback only, a free port, a config and
// an SQLite database generated in its own directory. Installed by
// deploy/dev/ensure-neutron.sh. Stopped by PID (its process group: the API
// worker processes it forks) — never anything we did not start — and its
// directory removed (PALISADE_KEEP_NEUTRON_DIR=1 keeps it for a post-mortem).
//
// How it runs without the rest of OpenStack (DESIGN §11.9):
// - no Keystone: auth_strategy = noauth. Every request is admin; create
//   bodies must name project_id.
// - no RabbitMQ: transport_url = fake:// (in-process; nothing listens).
// - no agents: ML2 with a flat type driver and a small mechanism driver
//   (test/neutron/palisade_test_mech.py) that binds any host the way
//   linuxbridge would, and fails hosts named fail-*.
// - SQLite, schema built from Neutron's models (test/neutron/neutron_db_init.py):
//   Neutron's alembic migrations do not run on SQLite. Built once per
//   process and copied (6-7 s each time otherwise).
// - oslo.policy: policy_file and policy_dirs name real (empty) paths — an
//   empty policy_dirs makes every request fail with 500.
// - /usr/bin/python3 explicitly: another python3 earlier on PATH (pyenv)
//   lacks Debian's modules.
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../../services/runtime/package-root.js";
import { freePort } from "./etcd-process.js";

export interface NeutronProcess {
  /** http://127.0.0.1:PORT (no /v2.0). */
  url: string;
  pid: number;
  dir: string;
  /** Neutron's log file (for failure messages). */
  logFile: string;
  stop(): Promise<void>;
  /**
   * Ends the server (its whole process group) and starts it again on the
   * same port, configuration and database — what an operator's restart
   * does; resolves once it answers again. `pid` is the new process's.
   */
  restart(): Promise<void>;
}

const PYTHON = "/usr/bin/python3";
const SERVER = "/usr/bin/neutron-server";

export function neutronInstalled(): boolean {
  return existsSync(SERVER) && existsSync("/usr/lib/python3/dist-packages/neutron/server/__init__.py");
}

let schemaFile: string | undefined;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err.slice(-2000)}`))));
  });
}

async function schema(env: NodeJS.ProcessEnv): Promise<string> {
  if (schemaFile && existsSync(schemaFile)) return schemaFile;
  const dir = mkdtempSync(join(tmpdir(), "palisade-neutron-schema-"));
  // One per process, reused by every server it starts; gone with the process.
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "neutron.db");
  await run(PYTHON, [join(packageRoot(), "test/neutron/neutron_db_init.py"), `sqlite:///${file}`], env);
  schemaFile = file;
  return file;
}

export interface StartNeutronOptions {
  /** Neutron's pagination_max_limit: a plain GET of a collection returns at most this many (-1: no limit). */
  paginationMaxLimit?: number;
  /**
   * Neutron's filter_validation (default true). false lets `changed_since`
   * through as a list filter (DESIGN §11.7): what an operator sets to give
   * palisade-openstack watch its size-independent change feed.
   */
  filterValidation?: boolean;
  /**
   * The Palisade ML2 mechanism driver (services/openstack/ml2) instead of the
   * tests' binder, polling palisade-openstack's ML2 endpoint at this URL.
   */
  palisadeAdapterUrl?: string;
  /**
   * Neutron's logging API: the `log` service plugin (`openstack network log
   * …`, /v2.0/log/logs). Its security_group logs are accepted only with a
   * log driver registered: the Palisade ML2 driver's (palisadeAdapterUrl).
   */
  networkLog?: boolean;
  /** The ML2 driver's [palisade] poll_interval (default 0.2 s here; the driver's own default is 0.5). */
  palisadePollInterval?: number;
  /**
   * Start from a copy of this SQLite database (another server's, saved with
   * backupNeutronDb) instead of an empty one: the same cloud under another
   * configuration.
   */
  database?: string;
}

export async function startNeutron(opts: StartNeutronOptions = {}): Promise<NeutronProcess> {
  if (!neutronInstalled()) throw new Error("neutron-server is not installed: run deploy/dev/ensure-neutron.sh as root (npm test does)");
  const dir = mkdtempSync(join(tmpdir(), "palisade-neutron-"));
  // The real driver is found as an installed one would be: its entry point
  // in a dist-info directory on the path, its package from the repository.
  const py = join(dir, "py");
  mkdirSync(join(py, "palisade_ml2-0.1.0.dist-info"), { recursive: true });
  writeFileSync(join(py, "palisade_ml2-0.1.0.dist-info", "METADATA"), "Metadata-Version: 2.1\nName: palisade-ml2\nVersion: 0.1.0\n");
  // The entry point the package declares (pyproject.toml), as pip would write it.
  const entry = /^\[project\.entry-points\."neutron\.ml2\.mechanism_drivers"\]\n(\w+) = "([^"]+)"$/m.exec(readFileSync(join(packageRoot(), "services/openstack/ml2/pyproject.toml"), "utf8"));
  if (!entry) throw new Error("services/openstack/ml2/pyproject.toml declares no neutron.ml2.mechanism_drivers entry point");
  writeFileSync(join(py, "palisade_ml2-0.1.0.dist-info", "entry_points.txt"), `[neutron.ml2.mechanism_drivers]\n${entry[1]} = ${entry[2]}\n`);
  const pythonPath = [join(packageRoot(), "test/neutron"), py, join(packageRoot(), "services/openstack/ml2")].join(":");
  const env = { ...process.env, PYTHONPATH: pythonPath, PYTHONDONTWRITEBYTECODE: "1" };
  copyFileSync(opts.database ?? await schema(env), join(dir, "neutron.db"));
  for (const d of ["state", "lock", "policy.d"]) mkdirSync(join(dir, d));
  writeFileSync(join(dir, "policy.yaml"), "{}\n");
  const port = await freePort();
  const logFile = join(dir, "neutron.log");
  writeFileSync(join(dir, "neutron.conf"), `[DEFAULT]
bind_host = 127.0.0.1
bind_port = ${port}
auth_strategy = noauth
core_plugin = ml2
service_plugins = ${opts.networkLog ? "log" : ""}
transport_url = fake://
# One API worker process, no RPC workers: a 2-core test machine.
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
state_path = ${dir}/state
api_paste_config = /etc/neutron/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
pagination_max_limit = ${opts.paginationMaxLimit ?? -1}
filter_validation = ${opts.filterValidation === false ? "false" : "true"}
log_file = ${logFile}
[database]
connection = sqlite:///${dir}/neutron.db
[oslo_policy]
policy_file = ${dir}/policy.yaml
policy_dirs = ${dir}/policy.d
[oslo_concurrency]
lock_path = ${dir}/lock
# No quotas: the bench makes 1,000 ports (the defaults: 500 ports, 10 groups, 100 rules per project).
[quotas]
quota_port = -1
quota_security_group = -1
quota_security_group_rule = -1
quota_network = -1
quota_subnet = -1
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers = ${opts.palisadeAdapterUrl ? "palisade" : "palisade_test"}
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[palisade]
adapter_url = ${opts.palisadeAdapterUrl ?? "http://127.0.0.1:9"}
poll_interval = ${opts.palisadePollInterval ?? 0.2}
`);
  const out = openSync(join(dir, "stdout.log"), "a");
  const url = `http://127.0.0.1:${port}`;
  let child!: ChildProcess;
  let exited = false;
  const launch = () => {
    // detached: its own process group, so ending it ends the workers it forks too.
    child = spawn(PYTHON, [SERVER, "--config-file", join(dir, "neutron.conf")], {
      cwd: dir, env, stdio: ["ignore", out, out], detached: true,
    });
    exited = false;
    const mine = child;
    mine.on("exit", () => { if (child === mine) exited = true; });
  };
  const end = async () => {
    if (exited) return;
    const pid = child.pid!;
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    try { process.kill(-pid, "SIGTERM"); } catch { /* already gone */ }
    const t = setTimeout(() => { try { process.kill(-pid, "SIGKILL"); } catch { /* gone */ } }, 5_000);
    await gone;
    clearTimeout(t);
  };
  const stop = async () => {
    await end();
    // Its database, config and log go with it (failure messages quote the
    // log's tail before this); PALISADE_KEEP_NEUTRON_DIR=1 keeps them.
    if (process.env.PALISADE_KEEP_NEUTRON_DIR !== "1") rmSync(dir, { recursive: true, force: true });
  };
  const ready = async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (exited) throw new Error(`neutron-server exited while starting; log ${logFile}: ${tail(logFile)}`);
      try {
        const r = await fetch(`${url}/v2.0/networks?limit=1`, { signal: AbortSignal.timeout(2_000) });
        if (r.ok) return;
      } catch { /* not yet */ }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`neutron-server did not answer within 60 s; log ${logFile}: ${tail(logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  launch();
  await ready();
  const proc: NeutronProcess = {
    url, pid: child.pid!, dir, logFile, stop,
    restart: async () => {
      await end();
      launch();
      proc.pid = child.pid!;
      await ready();
    },
  };
  return proc;
}

/** A consistent copy of a running server's database (SQLite's online backup) at `to`, for startNeutron({ database }). */
export async function backupNeutronDb(neutron: NeutronProcess, to: string): Promise<void> {
  await run(PYTHON, ["-c", "import sqlite3, sys; s = sqlite3.connect(sys.argv[1], timeout=30); d = sqlite3.connect(sys.argv[2]); s.backup(d); d.close(); s.close()",
    join(neutron.dir, "neutron.db"), to], process.env);
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").filter((l) => / (ERROR|CRITICAL) /.test(l)).slice(-5).join(" | ").slice(-1500);
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------------------
// A small admin API client for tests and the bench: creates what Nova and an
// operator would, through Neutron's real REST API.

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class NeutronAdmin {
  constructor(readonly url: string, readonly projectId = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6") {}

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Json> {
    const r = await fetch(`${this.url}/v2.0${path}`, {
      method,
      headers: { "content-type": "application/json", accept: "application/json", "X-Project-Id": this.projectId, ...headers },
      // PUT …/activate must have no body at all.
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`Neutron ${method} ${path}: HTTP ${r.status}: ${text.slice(0, 500)}`);
    return text ? JSON.parse(text) as Json : {};
  }

  async network(name: string, cidr4: string, cidr6?: string, projectId = this.projectId): Promise<{ id: string; subnets: string[] }> {
    const net = (await this.request("POST", "/networks", {
      network: { name, project_id: projectId, "provider:network_type": "flat", "provider:physical_network": `phys-${name}` },
    })).network;
    const subnets: string[] = [];
    for (const [v, cidr] of [[4, cidr4], [6, cidr6]] as const) {
      if (!cidr) continue;
      subnets.push((await this.request("POST", "/subnets", {
        subnet: { network_id: net.id, project_id: projectId, ip_version: v, cidr, enable_dhcp: false, gateway_ip: null },
      })).subnet.id);
    }
    return { id: net.id, subnets };
  }

  async group(name: string, projectId = this.projectId): Promise<Json> {
    return (await this.request("POST", "/security-groups", { security_group: { name, project_id: projectId } })).security_group;
  }

  async rule(groupId: string, r: Json, projectId = this.projectId): Promise<Json> {
    return (await this.request("POST", "/security-group-rules", {
      security_group_rule: { security_group_id: groupId, project_id: projectId, direction: "ingress", ethertype: "IPv4", ...r },
    })).security_group_rule;
  }

  async port(p: Json, projectId = this.projectId): Promise<Json> {
    return (await this.request("POST", "/ports", { port: { project_id: projectId, device_owner: "compute:nova", ...p } })).port;
  }

  async updatePort(id: string, p: Json): Promise<Json> {
    return (await this.request("PUT", `/ports/${id}`, { port: p })).port;
  }

  async listAll(collection: string, query = ""): Promise<Json> {
    return this.request("GET", `/${collection}${query}`);
  }
}
