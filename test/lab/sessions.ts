// Long-lived sessions between lab workloads (issue #21): TCP client-first,
// TCP server-first, UDP request/response and ICMP echo, IPv4 or IPv6, each
// side recording the wall-clock time of every receive. Tests ask when each
// side last received, the largest gap between receives in a window, and
// whether a TCP connection saw a reset or close. Processes are started with
// the lab's spawnIn (so destroy() kills them by PID) and stopped by PID here.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Lab } from "./lab.js";

const AGENT = fileURLToPath(new URL("./session-agent.mjs", import.meta.url));

export type SessionKind = "tcp-cf" | "tcp-sf" | "udp" | "icmp";

export interface SessionSpec {
  kind: SessionKind;
  family: 4 | 6;
  client: string;
  server: string;
  /** TCP/UDP server port; for UDP also the client's fixed source port + 10000. */
  port?: number;
}

export interface SideLog {
  rx: number[]; tx: number[]; stalls: [number, number][]; events: { ev: string; t: number; code?: string }[];
  /** ICMP echo replies: sequence number, receive time, round trip (ms). */
  echo: { seq: number; rx: number; rtt: number }[];
  /** UDP: sequence numbers sent and received, with their times. */
  seqTx: { seq: number; t: number }[];
  seqRx: { seq: number; t: number }[];
}

export interface Session {
  spec: SessionSpec;
  label: string;
  /** Everything recorded so far, per side (ICMP: the client's replies only; the server side is the kernel). */
  read(): { client: SideLog; server: SideLog };
  /** The last receive time of a side, or undefined if it never received. */
  lastRx(side: "client" | "server"): number | undefined;
  /** Receive times of either side later than `t`. */
  rxAfter(t: number): number[];
  /** Largest gap between consecutive receives of a side in [from, to], counting the window's edges. */
  maxGap(side: "client" | "server", from: number, to: number): { gap: number; at: number };
  /** deliveryDelayAt for a side (ICMP: sends from ping's sequence numbers and round trips, echoSends). */
  maxDelay(side: "client" | "server", from: number, to: number): { gap: number; at: number };
  /** Did TCP see an end, reset or error (on either side)? The events themselves, for messages. */
  ended(): { ev: string; code?: string }[];
  /**
   * UDP and ICMP: packets sent in [from, to] that never arrived (a UDP
   * request or its reply, an echo request or its reply), with their send
   * times. A late packet is not lost: only a drop counts.
   */
  lost(from: number, to: number): number[];
  /** TCP: segments retransmitted so far by both ends of the connection (`ss -ti`): a drop shows here. */
  retransmitted(): Promise<number>;
  stop(): void;
}

function parse(file: string): SideLog {
  let text = "";
  try { text = readFileSync(file, "utf8"); } catch { /* not written yet */ }
  const log: SideLog = { rx: [], tx: [], stalls: [], events: [], echo: [], seqTx: [], seqRx: [] };
  for (const line of text.split("\n")) {
    if (line.startsWith("{")) {
      try {
        const o = JSON.parse(line) as { ev: string; t: number; code?: string; from?: number; seq?: number };
        if (o.ev === "rx") log.rx.push(o.t); else if (o.ev === "tx") log.tx.push(o.t); else if (o.ev === "stall") log.stalls.push([o.from!, o.t]); else log.events.push(o);
        if (o.seq !== undefined && o.ev === "rx") log.seqRx.push({ seq: o.seq, t: o.t });
        if (o.seq !== undefined && o.ev === "tx") log.seqTx.push({ seq: o.seq, t: o.t });
      } catch { /* a half-written last line */ }
      continue;
    }
    // ping -D: "[1733412345.123456] 64 bytes from ...: icmp_seq=1 ttl=63 time=0.1 ms"
    const m = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms/.exec(line);
    if (m) {
      const rx = Math.round(Number(m[1]) * 1000);
      log.rx.push(rx);
      log.echo.push({ seq: Number(m[2]), rx, rtt: Number(m[3]) });
    }
  }
  return log;
}

/**
 * ICMP echo: when each request was sent, from ping's own numbering — a
 * reply's send time is its receive time less its round trip; a request with
 * no reply (lost: dropped somewhere) is placed between its neighbours by
 * sequence number. So a ping that was not scheduled (a starved CPU) sends
 * later and adds nothing; a request dropped on the way counts from its send
 * to the next reply (deliveryDelayAt with these sends).
 */
export function echoSends(echo: readonly { seq: number; rx: number; rtt: number }[]): number[] {
  const got = [...echo].sort((a, b) => a.seq - b.seq).map((e) => ({ seq: e.seq, sent: e.rx - e.rtt }));
  const out: number[] = [];
  for (let i = 0; i < got.length; i++) {
    const a = got[i]!, b = got[i + 1];
    out.push(a.sent);
    if (!b) break;
    for (let q = a.seq + 1; q < b.seq; q++) out.push(a.sent + ((b.sent - a.sent) * (q - a.seq)) / (b.seq - a.seq));
  }
  return out;
}

/**
 * The longest a side waited for delivery: over the peer's sends at s in
 * [from, to], the time from s to the side's first receive at or after s (or
 * `to`), less the time the receiving process itself was not running
 * (`stalls`, its event loop's pauses). A sender that stalls (a starved CPU)
 * sends nothing and adds nothing, a receiver that stalls reads late and adds
 * nothing; packets sent and dropped do.
 */
export function deliveryDelayAt(rx: number[], peerTx: number[], from: number, to: number, stalls: [number, number][] = []): { gap: number; at: number } {
  let gap = 0, at = from, i = 0;
  for (const s of peerTx) {
    if (s < from || s > to) continue;
    while (i < rx.length && rx[i]! < s) i++;
    const r = Math.min(rx[i] ?? to, to);
    const stalled = stalls.reduce((acc, [a, b]) => acc + Math.max(0, Math.min(b, r) - Math.max(a, s)), 0);
    const d = r - s - stalled;
    if (d > gap) { gap = d; at = s; }
  }
  return { gap, at };
}

/** The largest gap between receives in [from, to] (the window's edges count as receives) and where it starts. */
export function sessionGapAt(rx: number[], from: number, to: number): { gap: number; at: number } {
  const inside = rx.filter((t) => t >= from && t <= to);
  let prev = from, gap = 0, at = from;
  for (const t of [...inside, to]) { if (t - prev > gap) { gap = t - prev; at = prev; } prev = t; }
  return { gap, at };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`session: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Session processes run at a raised priority (`nice -n -10`): they sleep
 * 20 ms at a time, and on a busy 2-core machine (tests in parallel, dozens
 * of processes) an agent or ping at normal priority waits for the CPU long
 * enough to look like a pause of the network. Not real-time: sixty agents
 * waking 50 times a second under SCHED_FIFO starved the drivers and the
 * controller (sessions then never started).
 */
const rt = (cmd: string, args: string[]): [string, string[]] => ["nice", ["-n", "-10", cmd, ...args]];

export function createSessions(lab: Lab) {
  const dir = mkdtempSync(join(tmpdir(), "palisade-sessions-"));
  const all: Session[] = [];
  let n = 0;

  async function open(spec: SessionSpec): Promise<Session> {
    const c = lab.workloads.get(spec.client), s = lab.workloads.get(spec.server);
    if (!c || !s) throw new Error(`session: unknown workload ${spec.client} or ${spec.server}`);
    const host = spec.family === 6 ? s.ipv6 : s.ipv4;
    const label = `${spec.kind}/v${spec.family} ${spec.client}->${spec.server}${spec.port ? `:${spec.port}` : ""}`;
    const k = n++;
    const cf = join(dir, `${k}-client.log`), sf = join(dir, `${k}-server.log`);
    const children: ReturnType<Lab["spawnIn"]>[] = [];
    if (spec.kind === "icmp") {
      children.push(lab.spawnIn(c.ns, ...rt("ping", [`-${spec.family}`, "-D", "-n", "-i", "0.02", host]), { logFile: cf }));
      await waitFor(() => parse(cf).rx.length > 0, `first echo reply of ${label}`);
    } else {
      if (!spec.port) throw new Error(`session ${label}: a port is needed`);
      children.push(lab.spawnIn(s.ns, ...rt(process.execPath, [AGENT, "server", spec.kind, String(spec.port)]), { logFile: sf }));
      await waitFor(() => parse(sf).events.some((e) => e.ev === "ready"), `server of ${label}`);
      const args = [AGENT, "client", spec.kind, host, String(spec.port)];
      if (spec.kind === "udp") args.push(String(spec.port + 10_000));
      children.push(lab.spawnIn(c.ns, ...rt(process.execPath, args), { logFile: cf }));
      // Running means traffic both ways (tcp-sf: the server's pushes arrive).
      await waitFor(() => parse(cf).rx.length > 0 && (spec.kind === "tcp-sf" || parse(sf).rx.length > 0), `traffic of ${label}`);
    }
    const read = () => ({ client: parse(cf), server: parse(sf) });
    const session: Session = {
      spec, label, read,
      lastRx: (side) => read()[side].rx.at(-1),
      rxAfter: (t) => { const r = read(); return [...r.client.rx, ...r.server.rx].filter((x) => x > t).sort((a, b) => a - b); },
      maxGap: (side, from, to) => sessionGapAt(read()[side].rx, from, to),
      maxDelay: (side, from, to) => {
        if (spec.kind === "icmp") { const e = read().client.echo; return deliveryDelayAt(e.map((x) => x.rx).sort((a, b) => a - b), echoSends(e), from, to); }
        const r = read();
        return deliveryDelayAt(r[side].rx, r[side === "client" ? "server" : "client"].tx, from, to, r[side].stalls);
      },
      ended: () => { const r = read(); return [...r.client.events, ...r.server.events].filter((e) => e.ev !== "ready"); },
      lost: (from, to) => {
        const r = read();
        if (spec.kind === "icmp") {
          const got = new Set(r.client.echo.map((e) => e.seq));
          const seqs = [...got].sort((a, b) => a - b);
          const sends = echoSends(r.client.echo);
          // echoSends lists every sequence number from the first to the last reply, in order.
          return sends.filter((t, i) => !got.has(seqs[0]! + i) && t >= from && t <= to);
        }
        if (spec.kind !== "udp") return [];
        const back = new Set(r.client.seqRx.map((x) => x.seq));
        return r.client.seqTx.filter((x) => x.t >= from && x.t <= to && !back.has(x.seq)).map((x) => x.t);
      },
      retransmitted: async () => {
        if (spec.kind !== "tcp-cf" && spec.kind !== "tcp-sf") return 0;
        const total = async (ns: string, filter: string) => {
          const out = await lab.exec(ns, "ss", ["-tinH", "state", "established", filter]);
          return [...out.matchAll(/\bretrans:\d+\/(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
        };
        return (await total(s.ns, `sport = :${spec.port}`)) + (await total(c.ns, `dport = :${spec.port}`));
      },
      // subprocess.kill, not process.kill(pid): a child that exited but is
      // not yet reaped made process.kill throw ESRCH, which ended an
      // afterAll before the lab's namespaces were removed.
      stop: () => { for (const ch of children) ch.kill("SIGKILL"); },
    };
    all.push(session);
    return session;
  }

  return {
    open,
    /** The sessions of every kind, both families, between two workloads (ports from `basePort`, one per TCP/UDP session). */
    async openAll(client: string, server: string, basePort: number): Promise<Session[]> {
      const out: Session[] = [];
      let p = basePort;
      for (const family of [4, 6] as const) {
        for (const kind of ["tcp-cf", "tcp-sf", "udp", "icmp"] as const) {
          out.push(await open({ kind, family, client, server, port: kind === "icmp" ? undefined : p++ }));
        }
      }
      return out;
    },
    stopAll(): void { for (const s of all) s.stop(); },
  };
}
export type Sessions = ReturnType<typeof createSessions>;
