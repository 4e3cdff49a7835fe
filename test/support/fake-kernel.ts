// An in-memory kernel behind the driver's CommandRunner: just enough of
// iptables-save -t filter|raw / iptables-restore --noflush (filter and raw
// tables, both families)
// and ipset save / restore for the dataplane's round trips, so driver logic
// can be tested without root. Restores can be held at a gate, to put the
// driver into "an apply is running" on purpose.
//
// It refuses what the kernel refuses (DESIGN §6.7, §8.2), with the messages
// the real tools print (iptables-nft 1.8.9, ipset 7.17), and a failing batch
// leaves behind what the real one leaves: test/dataplane/fake-kernel-conformance.test.ts
// runs the same command sequences on real iptables/ipset in a namespace and
// on this fake, and compares accept/refuse and the state left behind.
//
// iptables-restore (each table's section, *filter or *raw up to its COMMIT,
//   is one transaction: all or nothing; a later section's failure keeps the
//   earlier sections, as the legacy backend does — the driver reads back
//   after any failure either way):
//   -A/-I/-D/-X on a chain that does not exist; -I past the end, -D past
//   the end; `-j/-g pal-…` to a chain that does not exist (yet: declared
//   later in the same restore counts as missing); `--match-set S` for a set
//   that does not exist or is of the other family; -X of a chain that is
//   not empty or that a rule still jumps to.
// ipset restore (not atomic): lines are carried out in order; a line the
//   kernel refuses stops the restore with everything before it applied; a
//   line ipset itself cannot parse also loses the run of add/del lines of
//   the same command and set just before it (ipset buffers those into one
//   netlink message, sent only when the command or set changes). Refused:
//   create of an existing set (with -exist: unless the same parameters),
//   add/del/flush/destroy of a missing set, destroy of a set a rule or a
//   list:set references, add of a present / del of an absent member without
//   -exist; members by type: hash:net `<net>` of the set's family, not /0;
//   hash:net,iface `<net>,<iface>` (iface ≤ 15 characters, /0 allowed);
//   bitmap:ip,mac `<address>[,<MAC>]`, a plain address inside the range, one
//   entry per address (add -exist replaces the MAC; del goes by address,
//   whatever MAC it names); list:set: names of existing sets.
// ipset - (interactive, openSession; DESIGN §6.7): the same commands and
//   refusals, but each line on its own (a refused line changes nothing and
//   the next line is carried out; nothing buffered is lost; -exist, once
//   given, holds for every later line of the session); its output is the
//   real one's, byte for byte: prompts, messages without line numbers,
//   `version`'s answer.
import { CommandError, type CommandRunner, type CommandSession, type RunOptions } from "../../services/driver/kernel/command-runner.js";

/** A fake session; kill() may say why (as a signal would). */
export interface FakeSession extends CommandSession {
  kill(why?: string): Promise<void>;
}
import { formatAddress, formatCidr, parseCidr, type IpVersion } from "../../services/model/index.js";

type Table = Map<string, string[]>;
const BUILTIN = ["INPUT", "FORWARD", "OUTPUT"];
const RAW_BUILTIN = ["PREROUTING", "OUTPUT"];
type TableName = "filter" | "raw";

/** A set as `ipset save` shows it: its create parameters, and members as printed. */
export interface FakeSet {
  header: string;
  members: Set<string>;
}

/** A refusal: `parse` ones are found by ipset itself (losing the buffered run), others by the kernel. */
class Refused extends Error {
  constructor(message: string, readonly parse = false) {
    super(message);
  }
}

const setType = (s: FakeSet) => s.header.split(/\s+/)[0]!;
/** The family a set matches in; undefined for list:set (either). */
function setFamily(s: FakeSet): IpVersion | undefined {
  const t = setType(s);
  if (t === "list:set") return undefined;
  if (t.startsWith("bitmap:")) return 4;
  return /(^| )family inet6( |$)/.test(s.header) ? 6 : 4;
}
/** [first, last] address of a bitmap's range ("a.b.0.0/16" or "a.b.c.d-e.f.g.h"). */
function bitmapRange(s: FakeSet): [bigint, bigint] {
  const r = /(?:^| )range (\S+)/.exec(s.header)?.[1] ?? "";
  const dash = r.indexOf("-");
  if (dash >= 0) return [parseCidr(r.slice(0, dash))!.addr, parseCidr(r.slice(dash + 1))!.addr];
  const c = parseCidr(r)!;
  return [c.addr, c.addr + (1n << BigInt(32 - c.prefix)) - 1n];
}

function printedRange(r: string): string {
  const c = parseCidr(r);
  return r.includes("-") || !c ? r : `${formatAddress(4, c.addr)}-${formatAddress(4, c.addr + (1n << BigInt(32 - c.prefix)) - 1n)}`;
}

const MAC_RE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const SET_MATCH_RE = /--match-set (\S+) /g;
const TARGET_RE = /(?:^| )-[jg] (\S+)/;

export class FakeKernel implements CommandRunner {
  /** The filter table per family. */
  readonly tables: Record<4 | 6, Table> = { 4: FakeKernel.builtins(), 6: FakeKernel.builtins() };
  /** The raw table per family. */
  readonly rawTables: Record<4 | 6, Table> = { 4: FakeKernel.builtins(RAW_BUILTIN), 6: FakeKernel.builtins(RAW_BUILTIN) };
  readonly sets = new Map<string, FakeSet>();
  /** Every command run, in order ("iptables-nft-restore", "ipset save", …). */
  readonly log: string[] = [];
  /** The input of each command, aligned with `log` ("" when none). */
  readonly inputs: string[] = [];
  /** The error of each refused command, aligned with `log` (undefined when it succeeded). */
  readonly refusals: (string | undefined)[] = [];
  /** When set, iptables restores wait for it before changing anything. */
  gate: Promise<void> | undefined;
  /** The conntrack table: original source and destination, zone (0 = the default). */
  readonly conntrack: { family: 4 | 6; src: string; dst: string; zone: number }[] = [];
  /** When set, `conntrack` fails with this message (as when the module or the tool is missing). */
  conntrackFailure: string | undefined;
  /** Every `ipset -` session opened, oldest first (kill one to simulate its process dying). */
  readonly sessions: FakeSession[] = [];
  /** When set, sessions read nothing more (a hung process: no answer, no exit). */
  sessionStall = false;
  private static nextPid = 4_000_000;

  private static builtins(names = BUILTIN): Table {
    return new Map(names.map((n) => [n, []]));
  }

  private table(family: 4 | 6, name: TableName): Table {
    return name === "raw" ? this.rawTables[family] : this.tables[family];
  }

  async run(cmd: string, args: string[], input?: string): Promise<{ stdout: string }> {
    const command = `${cmd} ${args.join(" ")}`.trim();
    this.log.push(command);
    this.inputs.push(input ?? "");
    const at = this.refusals.push(undefined) - 1;
    const family = cmd.startsWith("ip6") ? 6 : 4;
    try {
      if (/^ip6?tables-(nft|legacy)-save$/.test(cmd)) {
        const t = args[args.indexOf("-t") + 1];
        if (args.includes("-t") && t !== "filter" && t !== "raw") throw new Error(`fake kernel: unsupported table ${t}`);
        return { stdout: this.save(family, args.includes("-t") ? (t as TableName) : "filter") };
      }
      if (/^ip6?tables-(nft|legacy)-restore$/.test(cmd)) {
        if (this.gate) await this.gate;
        this.restore(cmd, family, input ?? "");
        return { stdout: "" };
      }
      if (cmd === "conntrack") return { stdout: this.conntrackRun(args) };
      if (cmd === "ipset" && args[0] === "save") return { stdout: this.ipsetSave() };
      if (cmd === "ipset" && args[0] === "restore") { this.ipsetRestore(input ?? ""); return { stdout: "" }; }
    } catch (err) {
      if (err instanceof CommandError) this.refusals[at] = err.stderr;
      throw err;
    }
    throw new Error(`fake kernel: unsupported command ${command}`);
  }

  /**
   * `conntrack -D -f ipv4|ipv6 [-w ZONE] -s|-d NET`, as conntrack-tools
   * 1.4.7 answers it: the deleted entries on stdout; exit 1 with "0 flow
   * entries have been deleted." when nothing matched. Anything else is
   * refused, like options the real tool refuses (e.g. -w with -U).
   */
  private conntrackRun(args: string[]): string {
    if (this.conntrackFailure) throw new CommandError(`conntrack ${args.join(" ")}`, this.conntrackFailure, 1);
    const a = [...args];
    if (a.shift() !== "-D") throw new CommandError(`conntrack ${args.join(" ")}`, "fake kernel: only conntrack -D is supported", 2);
    let family: 4 | 6 | undefined;
    let zone: number | undefined;
    let by: "src" | "dst" | undefined;
    let net: string | undefined;
    while (a.length) {
      const o = a.shift()!;
      const v = a.shift();
      if (v === undefined) throw new CommandError(`conntrack ${args.join(" ")}`, `conntrack v1.4.7 (conntrack-tools): option \`${o}' requires an argument`, 2);
      if (o === "-f") family = v === "ipv4" ? 4 : v === "ipv6" ? 6 : undefined;
      else if (o === "-w") zone = Number(v);
      else if (o === "-s" || o === "-d") { by = o === "-s" ? "src" : "dst"; net = v; }
      else throw new CommandError(`conntrack ${args.join(" ")}`, `conntrack v1.4.7 (conntrack-tools): Illegal option \`${o}'`, 2);
    }
    const cidr = net === undefined ? undefined : parseCidr(net);
    if (!family || !by || !cidr || cidr.version !== family || (zone !== undefined && !(Number.isInteger(zone) && zone >= 0 && zone <= 65535))) {
      throw new CommandError(`conntrack ${args.join(" ")}`, "conntrack v1.4.7 (conntrack-tools): Bad parameter", 2);
    }
    const hit = (e: (typeof this.conntrack)[number]) => {
      if (e.family !== family || (zone !== undefined && e.zone !== zone)) return false;
      const addr = parseCidr(e[by!]);
      return addr !== undefined && addr.version === cidr.version && (addr.addr & ~((1n << BigInt((family === 4 ? 32 : 128) - cidr.prefix)) - 1n)) === cidr.addr;
    };
    const deleted = this.conntrack.filter(hit);
    if (!deleted.length) throw new CommandError(`conntrack ${args.join(" ")}`, "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n", 1);
    for (const e of deleted) this.conntrack.splice(this.conntrack.indexOf(e), 1);
    return deleted.map((e) => `tcp      6 431999 ESTABLISHED src=${e.src} dst=${e.dst} zone=${e.zone}\n`).join("");
  }

  /** Rules of one chain as iptables-save prints them after "-A <chain> ". */
  chain(family: 4 | 6, name: string): string[] | undefined {
    return this.tables[family].get(name);
  }

  save(family: 4 | 6, table: TableName = "filter"): string {
    const t = this.table(family, table);
    const builtin = table === "raw" ? RAW_BUILTIN : BUILTIN;
    const out = [`*${table}`];
    for (const n of t.keys()) out.push(`:${n} ${builtin.includes(n) ? "ACCEPT" : "-"} [0:0]`);
    // iptables-save quotes comments that contain a colon.
    for (const [n, rules] of t) for (const r of rules) out.push(`-A ${n} ${r.replace(/--comment (pal:\S+)/, '--comment "$1"')}`);
    out.push("COMMIT", "");
    return out.join("\n");
  }

  // ------------------------------------------------------------ iptables

  private restore(cmd: string, family: 4 | 6, text: string): void {
    const lines = text.split("\n");
    // One transaction per table section: a section ends at its COMMIT.
    let start = 0;
    lines.forEach((l, i) => {
      if (l !== "COMMIT") return;
      const head = lines.slice(start, i).findIndex((x) => x.startsWith("*"));
      const name = head >= 0 ? lines[start + head]!.slice(1) : "filter";
      if (name !== "filter" && name !== "raw") throw new Error(`fake kernel: unsupported table ${name}`);
      this.restoreTable(cmd, family, name, lines, start, i + 1);
      start = i + 1;
    });
    if (lines.slice(start).some((l) => l !== "")) throw new CommandError(`${cmd} --noflush`, `${cmd}: COMMIT expected at line ${lines.length}`, 1);
  }

  private restoreTable(cmd: string, family: 4 | 6, table: TableName, all: string[], from: number, to: number): void {
    const builtin = table === "raw" ? RAW_BUILTIN : BUILTIN;
    // All or nothing, like the kernel's transaction: work on a copy.
    const t: Table = new Map([...this.table(family, table)].map(([n, r]) => [n, [...r]]));
    const lines = all.slice(from, to);
    const failed = (n: number, why: string) => new CommandError(`${cmd} --noflush`, `${cmd}: line ${n} failed: ${why}`, 1);
    const refused = (n: number, why: string) => new CommandError(`${cmd} --noflush`, `${cmd} v1.8.9 (nf_tables): ${why}\nError occurred at line: ${n}`, 2);
    lines.forEach((l, i) => {
      const n = from + i + 1;
      let m: RegExpExecArray | null;
      if (l === "" || l === `*${table}` || l === "COMMIT") return;
      if ((m = /^:(\S+) - \[0:0\]$/.exec(l))) { t.set(m[1]!, []); return; }
      if ((m = /^-[AI] (\S+) (?:(\d+) )?(.*)$/.exec(l))) {
        const [, name, pos, rule] = m;
        const c = t.get(name!);
        if (!c) throw failed(n, "No chain/target/match by that name.");
        const target = TARGET_RE.exec(` ${rule!}`)?.[1];
        // Upper-case targets are extensions (ACCEPT, DROP, MARK, NFLOG, …); anything else must be a chain.
        if (target !== undefined && !/^[A-Z]+$/.test(target) && !t.has(target)) throw refused(n, `Chain '${target}' does not exist`);
        for (const [, set] of `${rule!} `.matchAll(SET_MATCH_RE)) {
          const s = this.sets.get(set!);
          if (!s) throw refused(n, `Set ${set!} doesn't exist.\n`);
          const f = setFamily(s);
          if (f !== undefined && f !== family) throw refused(n, `The protocol family of set ${set!} is IPv${f}, which is not applicable.\n`);
        }
        if (l.startsWith("-A")) c.push(rule!);
        else {
          const p = Number(pos ?? 1);
          if (p < 1 || p > c.length + 1) throw failed(n, "Index of insertion too big.");
          c.splice(p - 1, 0, rule!);
        }
        return;
      }
      if ((m = /^-D (\S+) (\d+)$/.exec(l))) {
        const c = t.get(m[1]!);
        if (!c || Number(m[2]) < 1 || Number(m[2]) > c.length) throw failed(n, "No chain/target/match by that name.");
        c.splice(Number(m[2]) - 1, 1);
        return;
      }
      if ((m = /^-X (\S+)$/.exec(l))) {
        const name = m[1]!;
        const c = t.get(name);
        if (!c || builtin.includes(name)) throw failed(n, "No chain/target/match by that name.");
        // The kernel refuses to delete a chain that holds rules or that a rule jumps to.
        const referenced = [...t.values()].some((rules) => rules.some((r) => TARGET_RE.exec(` ${r}`)?.[1] === name));
        if (c.length || referenced) throw new CommandError(`${cmd} --noflush`, `${cmd} v1.8.9 (nf_tables): \nline ${n}: CHAIN_DEL failed (Device or resource busy): chain ${name}`, 4);
        t.delete(name);
        return;
      }
      throw new Error(`fake kernel: unexpected restore line ${l}`);
    });
    if (table === "raw") this.rawTables[family] = t;
    else this.tables[family] = t;
  }

  // ------------------------------------------------------------ ipset

  private ipsetSave(): string {
    const out: string[] = [];
    for (const [n, s] of this.sets) {
      out.push(`create ${n} ${s.header}`);
      for (const m of s.members) out.push(`add ${n} ${m}`);
    }
    return out.join("\n") + "\n";
  }

  /** Whether a rule (either family) or a list:set holds `name`: the kernel then refuses to destroy it. */
  private inUse(name: string): boolean {
    const needle = `--match-set ${name} `;
    for (const f of [4, 6] as const) for (const rules of this.tables[f].values()) if (rules.some((r) => `${r} `.includes(needle))) return true;
    for (const s of this.sets.values()) if (setType(s) === "list:set" && s.members.has(name)) return true;
    return false;
  }

  private ipsetRestore(text: string): void {
    // The add/del lines not yet sent (one command, one set): lost if a later line fails to parse.
    let run: { key: string; undo: (() => void)[] } | undefined;
    text.split("\n").forEach((l, i) => {
      const p = l.trim().split(/\s+/);
      if (!p[0]) return;
      try {
        const done = this.ipsetLine(l);
        if (!done) { run = undefined; return; }
        if (run?.key !== done.key) run = { key: done.key, undo: [] };
        run.undo.push(done.undo);
      } catch (err) {
        if (!(err instanceof Refused)) throw err;
        if (err.parse) for (const u of (run?.undo ?? []).reverse()) u();
        throw new CommandError("ipset restore", `ipset v7.17: Error in line ${i + 1}: ${err.message}`, 1);
      }
    });
  }

  /**
   * One ipset command line (create, destroy, flush, add, del), carried out
   * or refused (Refused). An add/del returns its key (command and set) and
   * how to undo it, for restore's buffered runs; other commands undefined.
   */
  private ipsetLine(l: string): { key: string; undo: () => void } | undefined {
    const p = l.trim().split(/\s+/);
    const exist = p.includes("-exist");
    const args = p.filter((x) => x !== "-exist");
    const [op, name] = [args[0]!, args[1] ?? ""];
    if (op === "create") {
      // ipset prints a bitmap's range as "<first>-<last>", whichever way it was given.
      const header = args.slice(2).join(" ").replace(/^(bitmap:\S+ range )(\S+)/, (_, t: string, r: string) => `${t}${printedRange(r)}`);
      const have = this.sets.get(name);
      if (have && !(exist && have.header === header)) throw new Refused("Set cannot be created: set with the same name already exists");
      if (!have) this.sets.set(name, { header, members: new Set() });
      return undefined;
    }
    if (op === "destroy" || op === "flush") {
      const s = this.sets.get(name);
      if (!s) throw new Refused("The set with the given name does not exist");
      if (op === "flush") s.members.clear();
      else if (this.inUse(name)) throw new Refused("Set cannot be destroyed: it is in use by a kernel component");
      else this.sets.delete(name);
      return undefined;
    }
    if (op === "add" || op === "del") {
      const s = this.sets.get(name);
      if (!s) throw new Refused("The set with the given name does not exist", true);
      // Parsed before the pending run is sent: a parse error loses that run, whichever set it was for.
      return { key: `${op} ${name}`, undo: this.member(s, op, args[2] ?? "", exist) };
    }
    throw new Error(`fake kernel: unexpected ipset line ${l}`);
  }

  // ------------------------------------------------------------ ipset - (interactive)

  /**
   * `ipset -`, as ipset 7.17 answers on a pipe with stdout unbuffered and
   * stderr merged into it (CommandRunner.openSession): "ipset> " before each
   * line is read; each line carried out on its own (nothing buffered across
   * lines, unlike restore); a refused line prints "ipset v7.17: <message>"
   * (no line number) and the next line is read; -exist, once given, holds
   * for the rest of the session; `version` prints
   * "ipset v7.17, protocol version: 7"; `quit` or EOF ends it (exit 0).
   * Output arrives asynchronously, as from a process.
   */
  openSession(cmd: string, args: string[], ro?: RunOptions): FakeSession {
    if (cmd !== "ipset" || args.join(" ") !== "-") throw new Error(`fake kernel: unsupported session ${cmd} ${args.join(" ")}`);
    const pid = FakeKernel.nextPid++;
    const outputs: ((t: string) => void)[] = [];
    const exits: ((why: string) => void)[] = [];
    let ended: string | undefined;
    let pending = "";
    let exist = false;
    const emit = (t: string) => setImmediate(() => { if (ended === undefined) for (const fn of outputs) fn(t); });
    const end = (why: string) => {
      if (ended !== undefined) return;
      ended = why;
      setImmediate(() => { for (const fn of exits) fn(why); });
    };
    const session: FakeSession = {
      pid,
      get ended() { return ended !== undefined; },
      write: (text) => {
        if (ended !== undefined) return;
        this.log.push("ipset -");
        this.inputs.push(text);
        const at = this.refusals.push(undefined) - 1;
        if (this.sessionStall) return;
        pending += text;
        // Lines are read (and carried out) as they arrive, after this write returns.
        setImmediate(() => {
          if (ended !== undefined) return;
          let nl: number;
          while ((nl = pending.indexOf("\n")) >= 0 && ended === undefined) {
            const l = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            const word = l.trim().split(/\s+/)[0] ?? "";
            if (word === "") { emit("ipset> "); continue; }
            if (word === "quit") { end("exited with code 0"); return; }
            if (word === "version") { emit("ipset v7.17, protocol version: 7\nipset> "); continue; }
            // -exist, once given, holds for the rest of the session (ipset's
            // interactive mode keeps its options; restore resets them per line).
            if (l.trim().split(/\s+/).includes("-exist")) exist = true;
            try {
              this.ipsetLine(exist ? `${l} -exist` : l);
              emit("ipset> ");
            } catch (err) {
              if (!(err instanceof Refused)) throw err;
              this.refusals[at] ??= `ipset v7.17: ${err.message}`;
              emit(`ipset v7.17: ${err.message}\nipset> `);
            }
          }
        });
      },
      onOutput: (fn) => { outputs.push(fn); },
      onExit: (fn) => { if (ended !== undefined) fn(ended); else exits.push(fn); },
      kill: (why = "killed by SIGKILL") => new Promise<void>((resolve) => {
        if (ended !== undefined) { resolve(); return; }
        exits.push(() => resolve());
        end(why);
      }),
    };
    ro?.onSpawn?.(pid);
    this.sessions.push(session);
    emit("ipset> ");
    return session;
  }

  /** One add/del, checked as ipset and the kernel check it; returns how to undo it. */
  private member(s: FakeSet, op: "add" | "del", raw: string, exist: boolean): () => void {
    const type = setType(s);
    let key: string; // what identifies the entry (a bitmap's is its address)
    let text: string; // the entry as ipset save prints it
    if (type === "list:set") {
      if (!this.sets.has(raw)) throw new Refused("Set to be added/deleted/tested as element does not exist.");
      key = text = raw;
    } else if (type === "bitmap:ip,mac") {
      const [ip, mac, ...rest] = raw.split(",");
      const c = parseCidr(ip ?? "");
      if (!c || c.version !== 4 || rest.length) throw new Refused(`Syntax error: cannot parse ${raw}: resolving to IPv4 address failed`, true);
      if (ip!.includes("/")) throw new Refused(`Syntax error: plain IP address must be supplied: ${ip}`, true);
      if (mac !== undefined && !MAC_RE.test(mac)) throw new Refused(`Syntax error: cannot parse '${mac}' as ethernet address`, true);
      const [lo, hi] = bitmapRange(s);
      if (c.addr < lo || c.addr > hi) throw new Refused("Element is out of the range of the set");
      key = formatAddress(4, c.addr);
      text = mac === undefined ? key : `${key},${mac.toUpperCase()}`;
    } else if (type === "hash:net" || type === "hash:net,iface") {
      const family = setFamily(s)!;
      const comma = raw.indexOf(",");
      if (type === "hash:net" && comma >= 0) throw new Refused(`Syntax error: Elem separator in ${raw}, but settype hash:net supports none.`, true);
      if (type === "hash:net,iface" && comma < 0) throw new Refused(`Syntax error: Second element is missing from ${raw}.`, true);
      const net = comma >= 0 ? raw.slice(0, comma) : raw;
      const iface = comma >= 0 ? raw.slice(comma + 1) : "";
      const c = parseCidr(net);
      if (!c || c.version !== family) throw new Refused(`Syntax error: cannot parse ${net}: resolving to IPv${family} address failed`, true);
      if (iface.length > 15) throw new Refused(`Syntax error: interface name '${iface}' is longer than 15 characters`, true);
      if (type === "hash:net" && c.prefix === 0) throw new Refused("The value of the CIDR parameter of the IP address is invalid");
      const host = c.prefix === (family === 4 ? 32 : 128);
      key = text = `${host ? formatAddress(family, c.addr) : formatCidr(c)}${comma >= 0 ? `,${iface}` : ""}`;
    } else {
      throw new Error(`fake kernel: unsupported set type ${type}`);
    }
    // The entry present under the same key, if any (a bitmap: any MAC of that address).
    const present = type === "bitmap:ip,mac" ? [...s.members].find((m) => m === key || m.startsWith(`${key},`)) : s.members.has(key) ? key : undefined;
    if (op === "add") {
      if (present !== undefined && !exist) throw new Refused("Element cannot be added to the set: it's already added");
      // With -exist, an entry of the same address is replaced (a bitmap's MAC is updated).
      if (present !== undefined) s.members.delete(present);
      s.members.add(text);
      return () => { s.members.delete(text); if (present !== undefined) s.members.add(present); };
    }
    if (present === undefined) {
      if (!exist) throw new Refused("Element cannot be deleted from the set: it's not added");
      return () => undefined;
    }
    s.members.delete(present);
    return () => s.members.add(present);
  }
}
