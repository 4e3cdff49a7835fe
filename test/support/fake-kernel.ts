// An in-memory kernel behind the driver's CommandRunner: just enough of
// iptables-save / iptables-restore --noflush (filter table, both families)
// and ipset save / restore for the dataplane's round trips, so driver logic
// can be tested without root. Restores can be held at a gate, to put the
// driver into "an apply is running" on purpose.
import type { CommandRunner } from "../../services/driver/command-runner.js";

type Table = Map<string, string[]>;
const BUILTIN = ["INPUT", "FORWARD", "OUTPUT"];

export class FakeKernel implements CommandRunner {
  readonly tables: Record<4 | 6, Table> = { 4: FakeKernel.builtins(), 6: FakeKernel.builtins() };
  readonly sets = new Map<string, { header: string; members: Set<string> }>();
  /** Every command run, in order ("iptables-nft-restore", "ipset save", …). */
  readonly log: string[] = [];
  /** The input of each command, aligned with `log` ("" when none). */
  readonly inputs: string[] = [];
  /** When set, iptables restores wait for it before changing anything. */
  gate: Promise<void> | undefined;

  private static builtins(): Table {
    return new Map(BUILTIN.map((n) => [n, []]));
  }

  async run(cmd: string, args: string[], input?: string): Promise<{ stdout: string }> {
    this.log.push(`${cmd} ${args.join(" ")}`.trim());
    this.inputs.push(input ?? "");
    const family = cmd.startsWith("ip6") ? 6 : 4;
    if (/^ip6?tables-(nft|legacy)-save$/.test(cmd)) return { stdout: this.save(family) };
    if (/^ip6?tables-(nft|legacy)-restore$/.test(cmd)) {
      if (this.gate) await this.gate;
      this.restore(family, input ?? "");
      return { stdout: "" };
    }
    if (cmd === "ipset" && args[0] === "save") return { stdout: this.ipsetSave() };
    if (cmd === "ipset" && args[0] === "restore") { this.ipsetRestore(input ?? ""); return { stdout: "" }; }
    throw new Error(`fake kernel: unsupported command ${cmd} ${args.join(" ")}`);
  }

  /** Rules of one chain as iptables-save prints them after "-A <chain> ". */
  chain(family: 4 | 6, name: string): string[] | undefined {
    return this.tables[family].get(name);
  }

  save(family: 4 | 6): string {
    const t = this.tables[family];
    const out = ["*filter"];
    for (const n of t.keys()) out.push(`:${n} ${BUILTIN.includes(n) ? "ACCEPT" : "-"} [0:0]`);
    // iptables-save quotes comments that contain a colon.
    for (const [n, rules] of t) for (const r of rules) out.push(`-A ${n} ${r.replace(/--comment (pal:\S+)/, '--comment "$1"')}`);
    out.push("COMMIT", "");
    return out.join("\n");
  }

  private restore(family: 4 | 6, text: string): void {
    // All or nothing, like the kernel's transaction: work on a copy.
    const t: Table = new Map([...this.tables[family]].map(([n, r]) => [n, [...r]]));
    for (const l of text.split("\n")) {
      let m: RegExpExecArray | null;
      if (l === "" || l === "*filter" || l === "COMMIT") continue;
      if ((m = /^:(\S+) - \[0:0\]$/.exec(l))) t.set(m[1]!, []);
      else if ((m = /^-A (\S+) (.*)$/.exec(l))) this.must(t, m[1]!).push(m[2]!);
      else if ((m = /^-I (\S+) (\d+) (.*)$/.exec(l))) this.must(t, m[1]!).splice(Number(m[2]) - 1, 0, m[3]!);
      else if ((m = /^-D (\S+) (\d+)$/.exec(l))) {
        const c = this.must(t, m[1]!);
        if (Number(m[2]) > c.length) throw new Error(`fake kernel: no rule ${m[2]} in ${m[1]}`);
        c.splice(Number(m[2]) - 1, 1);
      } else if ((m = /^-X (\S+)$/.exec(l))) t.delete(m[1]!);
      else throw new Error(`fake kernel: unexpected restore line ${l}`);
    }
    this.tables[family] = t;
  }

  private must(t: Table, name: string): string[] {
    const c = t.get(name);
    if (!c) throw new Error(`fake kernel: no chain ${name}`);
    return c;
  }

  private ipsetSave(): string {
    const out: string[] = [];
    for (const [n, s] of this.sets) {
      out.push(`create ${n} ${s.header}`);
      for (const m of s.members) out.push(`add ${n} ${m}`);
    }
    return out.join("\n") + "\n";
  }

  private ipsetRestore(text: string): void {
    for (const l of text.split("\n")) {
      const p = l.trim().split(/\s+/);
      if (!p[0]) continue;
      const name = p[1]!;
      if (p[0] === "create") { if (!this.sets.has(name)) this.sets.set(name, { header: p.slice(2).filter((x) => x !== "-exist").join(" "), members: new Set() }); }
      else if (p[0] === "add") this.sets.get(name)!.members.add(p[2]!);
      else if (p[0] === "del") this.sets.get(name)!.members.delete(p[2]!);
      else if (p[0] === "destroy") this.sets.delete(name);
      else if (p[0] === "flush") this.sets.get(name)!.members.clear();
      else throw new Error(`fake kernel: unexpected ipset line ${l}`);
    }
  }
}
