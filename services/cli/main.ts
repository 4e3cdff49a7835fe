#!/usr/bin/env node
// palisadectl — the operator CLI. Exit codes: 0 success, 1 failure (one-line
// reason on stderr), 2 usage error.
import { formatTable } from "../runtime/cli-table.js";
import { Option } from "commander";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { call } from "../contract/clients.js";
import { RpcError, rpcErrorOf } from "../contract/errors.js";
import { cliClients, controllerProgram } from "../runtime/cli-clients.js";
import { documentToPb, endpointFromPb, profileFromPb, refToPb } from "../contract/model-wire.js";
import type { ObjectRef } from "../contract/object-ref.js";
import { EXIT_USAGE, UsageError, fail, withUsageExit } from "../runtime/cli-env.js";
import { EndpointState, type HostStatus, type WatchStatusResponse, type EndpointStatus } from "../contract/status.js";
import {
  ValidationError, formatIssue, parseDocuments, parseEndpointKey, parseRefs, splitDocuments, toDocument, toYaml, ID_RE,
  type ModelObject,
} from "../model/index.js";
import { describeBehind, hostsBehind } from "./wait-condition.js";
import { decidedBy } from "./decided-by.js";
import { addFlowsCommand } from "./flows.js";
import { silenceIpServerNameWarning } from "../runtime/tls.js";

const program = controllerProgram("palisadectl", "Palisade operator CLI", {
  controllerHelp: "controller address HOST:PORT", certificateHelp: "client (OU=admin to change policy, OU=reader to read)",
});

const clients = () => cliClients(program, "palisadectl");

function readInput(file: string): string {
  try {
    return readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function loadObjects(file: string): ModelObject[] {
  return parseDocuments(splitDocuments(readInput(file), file === "-" ? "stdin" : file));
}

const output = () => new Option("-o, --output <format>", "output format").choices(["table", "json", "yaml"]).default("table");

const table = formatTable;

program.command("apply")
  .description("create or replace the profiles and endpoints in FILE (YAML or JSON; '-' for stdin), atomically")
  .requiredOption("-f, --filename <file>", "file to apply, or - for stdin")
  .action(async (o: { filename: string }) => {
    const objects = loadObjects(o.filename);
    const c = clients();
    const r = await call(c.policy, c.policy.apply, { deletes: [], documents: objects.map(documentToPb) });
    process.stdout.write(`applied ${objects.length} document(s), ${r.changed} changed, at revision ${r.revision}\n`);
    c.close();
  });

const del = program.command("delete").description("delete objects: -f FILE, or profile ID, or endpoint HOST/ORCH/WORKLOAD/ID");
del.option("-f, --filename <file>", "delete the objects named in FILE ('-' for stdin)")
  .option("--ignore-missing", "do not fail on objects that do not exist")
  .action(async (o: { filename?: string; ignoreMissing?: boolean }) => {
    if (!o.filename) throw new UsageError("delete needs -f FILE, or 'profile ID', or 'endpoint HOST/ORCH/WORKLOAD/ID'");
    const refs: ObjectRef[] = parseRefs(splitDocuments(readInput(o.filename), o.filename === "-" ? "stdin" : o.filename));
    await deleteRefs(refs, !!o.ignoreMissing);
  });
del.command("profile <id>").description("delete one profile").option("--ignore-missing", "do not fail if it does not exist")
  .action(async (id: string, o: { ignoreMissing?: boolean }) => {
    if (!ID_RE.test(id)) throw new UsageError(`invalid profile id '${id}'`);
    await deleteRefs([{ kind: "Profile", id }], !!o.ignoreMissing);
  });
del.command("endpoint <key>").description("delete one endpoint, named HOST/ORCH/WORKLOAD/ID").option("--ignore-missing", "do not fail if it does not exist")
  .action(async (key: string, o: { ignoreMissing?: boolean }) => {
    const k = parseEndpointKey(key);
    if (!k) throw new UsageError(`endpoint must be HOST/ORCH/WORKLOAD/ID, got '${key}'`);
    await deleteRefs([{ kind: "Endpoint", key: k }], !!o.ignoreMissing);
  });

async function deleteRefs(refs: ObjectRef[], ignoreMissing: boolean): Promise<void> {
  const c = clients();
  const r = await call(c.policy, c.policy.delete, { objects: refs.map(refToPb), ignoreMissing });
  process.stdout.write(`deleted ${r.deleted} object(s) at revision ${r.revision}\n`);
  c.close();
}

program.command("get")
  .description("list profiles or endpoints")
  .argument("<kind>", "profiles or endpoints")
  .addOption(output())
  .option("--host <host>", "only endpoints on this host")
  .action(async (kind: string, o: { output: string; host?: string }) => {
    const k = kind.replace(/s$/, "");
    if (k !== "profile" && k !== "endpoint") throw new UsageError(`get: unknown kind '${kind}' (profiles or endpoints)`);
    const c = clients();
    let objects: ModelObject[];
    if (k === "profile") {
      const r = await call(c.policy, c.policy.listProfiles, {});
      objects = r.profiles.map((p) => ({ kind: "Profile", profile: profileFromPb(p) }));
    } else {
      const r = await call(c.policy, c.policy.listEndpoints, { host: o.host ?? "" });
      objects = r.endpoints.map((e) => ({ kind: "Endpoint", endpoint: endpointFromPb(e) }));
    }
    c.close();
    const docs = objects.map(toDocument);
    if (o.output === "json") process.stdout.write(`${JSON.stringify(docs, null, 2)}\n`);
    else if (o.output === "yaml") process.stdout.write(docs.length ? toYaml(docs) : "");
    else if (k === "profile") {
      process.stdout.write(table([["ID", "TAGS", "INBOUND", "OUTBOUND"], ...objects.map((x) => {
        const p = (x as { profile: { id: string; tags: string[]; inboundRules: unknown[]; outboundRules: unknown[] } }).profile;
        return [p.id, p.tags.join(",") || "-", String(p.inboundRules.length), String(p.outboundRules.length)];
      })]));
    } else {
      process.stdout.write(table([["HOST", "ORCHESTRATOR", "WORKLOAD", "ID", "INTERFACE", "STATE", "ADDRESSES", "PROFILES"], ...objects.map((x) => {
        const e = (x as Extract<ModelObject, { kind: "Endpoint" }>).endpoint;
        return [e.host, e.orchestrator, e.workload, e.id, e.name, e.state, [...e.ipv4Nets, ...e.ipv6Nets].join(",") || "-", e.profileIds.join(",") || "-"];
      })]));
    }
  });

const EP_STATE: Record<number, string> = { [EndpointState.ENDPOINT_STATE_UP]: "up", [EndpointState.ENDPOINT_STATE_DOWN]: "down", [EndpointState.ENDPOINT_STATE_ERROR]: "error" };

function hostJson(h: HostStatus) {
  return {
    hostname: h.hostname, connected: h.connected, in_sync: h.inSync, applied_revision: h.appliedRevision,
    last_error: h.lastError, last_apply_ms: h.lastApplyMs, driver_version: h.driverVersion,
    iptables_backend: h.iptablesBackend, controller: h.controller, updated_unix_ms: h.updatedUnixMs,
  };
}
function endpointJson(e: EndpointStatus) {
  return { endpoint: e.endpointKey, host: e.hostname, state: EP_STATE[e.state] ?? "unknown", detail: e.detail, updated_unix_ms: e.updatedUnixMs };
}

function printStatus(format: string, modelRevision: number, hosts: HostStatus[], endpoints: EndpointStatus[], problems: string[]): void {
  if (format === "json") {
    process.stdout.write(`${JSON.stringify({ model_revision: modelRevision, problems, hosts: hosts.map(hostJson), endpoints: endpoints.map(endpointJson) })}\n`);
    return;
  }
  process.stdout.write(`model revision ${modelRevision}\n`);
  for (const p of problems) process.stdout.write(`WARNING: status may be incomplete: ${p}\n`);
  process.stdout.write(table([["HOST", "CONNECTED", "IN-SYNC", "APPLIED", "APPLY-MS", "BACKEND", "ERROR"], ...hosts.map((h) => [
    h.hostname, String(h.connected), String(h.inSync), String(h.appliedRevision), h.lastApplyMs.toFixed(1), h.iptablesBackend, h.lastError || "-",
  ])]));
  if (endpoints.length) {
    process.stdout.write(table([["ENDPOINT", "STATE", "DETAIL"], ...endpoints.map((e) => [e.endpointKey, EP_STATE[e.state] ?? "unknown", e.detail || "-"])]));
  }
}

/** Streams status: calls `onChange` with the full current view after every message. */
function watchStatus(onChange: (rev: number, hosts: Map<string, HostStatus>, eps: Map<string, EndpointStatus>, msg: WatchStatusResponse) => boolean | void): Promise<void> {
  const c = clients();
  const hosts = new Map<string, HostStatus>();
  const eps = new Map<string, EndpointStatus>();
  let rev = 0;
  return new Promise((resolve, reject) => {
    const stream = c.status.watchStatus({});
    let cancelledByUs = false;
    stream.on("data", (m: WatchStatusResponse) => {
      if (m.snapshot) { hosts.clear(); eps.clear(); }
      for (const h of m.hosts) hosts.set(h.hostname, h);
      for (const e of m.endpoints) eps.set(e.endpointKey, e);
      for (const h of m.removedHosts) hosts.delete(h);
      for (const e of m.removedEndpoints) eps.delete(e);
      if (m.modelRevision) rev = m.modelRevision;
      if (onChange(rev, hosts, eps, m) === true) {
        cancelledByUs = true;
        stream.cancel();
        c.close();
        resolve();
      }
    });
    // Only our own cancel is quiet: a controller shutting down cancels too,
    // and a stream that ends must not leave `wait` or `status -w` hanging.
    stream.on("error", (err: grpc.ServiceError) => {
      if (cancelledByUs) return;
      reject(rpcErrorOf(err, c.policy.getChannel().getTarget()));
    });
    stream.on("end", () => {
      if (!cancelledByUs) reject(new Error("the controller ended the status stream (shutting down?)"));
    });
  });
}

program.command("status")
  .description("host and endpoint status")
  .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
  .option("-w, --watch", "keep streaming changes")
  .action(async (o: { output: string; watch?: boolean }) => {
    if (!o.watch) {
      const c = clients();
      const r = await call(c.status, c.status.getStatus, {});
      c.close();
      printStatus(o.output, r.modelRevision, r.hosts, r.endpoints, r.problems);
      return;
    }
    await watchStatus((rev, hosts, eps, msg) => {
      if (o.output === "json") {
        process.stdout.write(`${JSON.stringify({ snapshot: msg.snapshot, model_revision: rev, problems: msg.problems, hosts: msg.hosts.map(hostJson), endpoints: msg.endpoints.map(endpointJson), removed_hosts: msg.removedHosts, removed_endpoints: msg.removedEndpoints })}\n`);
      } else {
        printStatus("table", rev, [...hosts.values()], [...eps.values()], msg.problems);
      }
    });
  });

program.command("wait")
  .description("wait until every connected host has applied the model at revision >= R (default: the current revision)")
  .option("--revision <n>", "revision to wait for")
  .option("--timeout <seconds>", "give up after this many seconds", "60")
  .action(async (o: { revision?: string; timeout: string }) => {
    const timeout = Number(o.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError("--timeout must be a positive number of seconds");
    let revision: number;
    if (o.revision !== undefined) {
      revision = Number(o.revision);
      if (!Number.isInteger(revision) || revision < 0) throw new UsageError("--revision must be a non-negative integer");
    } else {
      const c = clients();
      revision = (await call(c.policy, c.policy.getRevision, {})).revision;
      c.close();
    }
    let behind: HostStatus[] = [];
    let problems: string[] = [];
    const done = watchStatus((_rev, hosts, _eps, msg) => {
      behind = hostsBehind(hosts.values(), revision);
      // Status that cannot be trusted to be complete is no proof of anything.
      problems = msg.problems;
      return behind.length === 0 && problems.length === 0;
    });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"timeout">((r) => { timer = setTimeout(() => r("timeout"), timeout * 1000); });
    const result = await Promise.race([done, expired]);
    clearTimeout(timer);
    if (result === "timeout") {
      const list = describeBehind(behind, revision);
      const why = problems.length ? `; status incomplete: ${problems.join("; ")}` : "";
      fail(`timed out after ${timeout}s waiting for revision ${revision}; behind: ${list || (problems.length ? "unknown" : "status unavailable")}${why}`);
    }
    process.stdout.write(`all connected hosts applied revision ${revision}\n`);
    process.exit(0);
  });

program.command("trace")
  .description("the verdict the model gives a packet (a new flow) and the rules that decided it")
  .requiredOption("--from <ip>", "source address")
  .requiredOption("--to <ip>", "destination address")
  .requiredOption("--protocol <p>", "tcp, udp, icmp, icmpv6, sctp, udplite or a number")
  .option("--src-port <n>", "source port")
  .option("--dst-port <n>", "destination port")
  .option("--icmp-type <t>", "ICMP type")
  .option("--icmp-code <c>", "ICMP code")
  .option("--from-network <n>", "the sender's network, when the source address is held on several (\"\" = the default network)")
  .option("--to-network <n>", "the receiver's network, when the destination address is held on several (\"\" = the default network)")
  .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
  .action(async (o: { from: string; to: string; protocol: string; srcPort?: string; dstPort?: string; icmpType?: string; icmpCode?: string; fromNetwork?: string; toNetwork?: string; output: string }) => {
    const num = (v: string | undefined, flag: string, max: number) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`${flag} must be 0-${max}`);
      return n;
    };
    const req = {
      src: o.from, dst: o.to, protocol: o.protocol,
      srcPort: num(o.srcPort, "--src-port", 65535), dstPort: num(o.dstPort, "--dst-port", 65535),
      icmpType: num(o.icmpType, "--icmp-type", 255), icmpCode: num(o.icmpCode, "--icmp-code", 255),
      fromNetwork: o.fromNetwork, toNetwork: o.toNetwork,
    };
    const c = clients();
    const r = await call(c.policy, c.policy.trace, req);
    c.close();
    const v = (x: number) => (x === 1 ? "allow" : "deny");
    if (o.output === "json") {
      process.stdout.write(`${JSON.stringify({
        verdict: v(r.verdict), policed: r.policed, revision: r.revision,
        steps: r.steps.map((st) => ({ direction: st.direction, endpoint: st.endpoint, network: st.network || undefined, verdict: v(st.verdict), decision: st.decision, profile: st.profile || undefined, rule_index: st.ruleIndex >= 0 ? st.ruleIndex : undefined })),
      })}\n`);
      return;
    }
    process.stdout.write(`${v(r.verdict).toUpperCase()}${r.policed ? "" : " (neither address is an endpoint: not policed by Palisade)"}  (model revision ${r.revision})\n`);
    for (const st of r.steps) {
      const why = decidedBy(st);
      const net = st.network ? ` (network ${st.network})` : "";
      process.stdout.write(`  ${st.direction.padEnd(8)} ${st.endpoint}${net}: ${v(st.verdict)} — ${why}\n`);
    }
  });

addFlowsCommand(program);

silenceIpServerNameWarning();
withUsageExit(program);
try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof UsageError) fail(`palisadectl: ${e.message}`, EXIT_USAGE);
  if (e instanceof ValidationError) fail(`palisadectl: invalid input: ${e.issues.map(formatIssue).join("; ")}`);
  // The controller refused the input: the same issues, rebuilt from the status's structure.
  const refused = e instanceof RpcError ? e.validation() : undefined;
  if (refused) {
    const more = (e as RpcError).omittedIssues ? `; … and ${(e as RpcError).omittedIssues} more problem(s)` : "";
    fail(`palisadectl: invalid input: ${refused.issues.map(formatIssue).join("; ")}${more}`);
  }
  fail(`palisadectl: ${(e as Error).message}`);
}
