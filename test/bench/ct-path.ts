// How many rules an established packet is looked up against before it is
// accepted (issue #21 item 6, "established traffic pays at most one extra
// rule lookup per packet"): a walk of a packet through the filter table a
// namespace really holds (iptables-save), from the built-in chain to its
// verdict, counting every rule whose matches are evaluated.
//
// Structural, not a trace: the packet is described (interfaces, physdev,
// conntrack state, direction and mark) and the rules' matches are evaluated
// here. Only the matches a conntrack fast path uses are understood; a walk
// that reaches any other match (an ipset, a port) throws rather than guess,
// since an established packet of a current connection that gets that far
// has left the fast path — which is itself the finding.

export interface Packet {
  in: string;
  out: string;
  /** Bridge ports, when the packet crosses a bridge (br_netfilter). */
  physIn?: string;
  physOut?: string;
  /** Bridged (not routed by the host) between two ports of one bridge. */
  bridged?: boolean;
  ctstate: "NEW" | "ESTABLISHED" | "RELATED" | "INVALID";
  ctdir: "ORIGINAL" | "REPLY";
  ctmark: number;
  proto: "tcp" | "udp" | "icmp";
  /** TCP flags set on the packet (established: ACK). */
  tcpFlags?: readonly string[];
}

export interface Walk {
  verdict: "ACCEPT" | "DROP";
  /** Rules whose matches were evaluated, jumps and their chains' rules included. */
  lookups: number;
  /** chain:index of every rule looked at, in order. */
  path: string[];
}

/** `iptables-save -t filter` text -> rules (after `-A CHAIN`) per chain. */
export function chainsOf(save: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of save.split("\n")) {
    if (line.startsWith(":")) out.set(line.slice(1).split(" ")[0]!, out.get(line.slice(1).split(" ")[0]!) ?? []);
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    if (!out.has(m[1]!)) out.set(m[1]!, []);
    out.get(m[1]!)!.push(m[2]!);
  }
  return out;
}

function tokens(rule: string): string[] {
  const out: string[] = [];
  for (const m of rule.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) out.push(m[1] ?? m[2]!);
  return out;
}

const ifaceMatch = (pattern: string, name: string | undefined) =>
  name !== undefined && (pattern.endsWith("+") ? name.startsWith(pattern.slice(0, -1)) : name === pattern);

const num = (s: string) => Number(s);

/** Whether the rule's matches hold for the packet; its target (`-j X ...` / `-g X`) as tokens. */
function evaluate(rule: string, p: Packet): { hit: boolean; target: string[] } {
  const t = tokens(rule);
  let hit = true;
  let i = 0;
  let module = "";
  while (i < t.length) {
    let neg = false;
    if (t[i] === "!") { neg = true; i++; }
    const opt = t[i]!;
    if (opt === "-j" || opt === "-g") return { hit, target: t.slice(i) };
    let ok: boolean;
    let take = 2;
    switch (opt) {
      case "-m": module = t[i + 1]!; i += 2; continue;
      case "-i": ok = ifaceMatch(t[i + 1]!, p.in); break;
      case "-o": ok = ifaceMatch(t[i + 1]!, p.out); break;
      case "-p": ok = t[i + 1] === p.proto; break;
      case "--comment": ok = true; break;
      case "--ctstate": ok = t[i + 1]!.split(",").includes(p.ctstate); break;
      case "--ctdir": ok = t[i + 1] === p.ctdir; break;
      case "--mark": {
        if (module !== "connmark") throw new Error(`ct-path: --mark of module ${module} not understood: ${rule}`);
        const [v, m] = t[i + 1]!.split("/");
        const mask = m === undefined ? 0xffffffff : num(m);
        ok = ((p.ctmark & mask) >>> 0) === ((num(v!) & mask) >>> 0);
        break;
      }
      case "--physdev-in": ok = ifaceMatch(t[i + 1]!, p.physIn); break;
      case "--physdev-out": ok = ifaceMatch(t[i + 1]!, p.physOut); break;
      case "--physdev-is-bridged": ok = p.bridged === true; take = 1; break;
      case "--tcp-flags": {
        const flags = new Set(p.tcpFlags ?? ["ACK"]);
        const mask = t[i + 1]!.split(",");
        const want = new Set(t[i + 2]!.split(","));
        ok = p.proto === "tcp" && mask.every((f) => flags.has(f) === want.has(f));
        take = 3;
        break;
      }
      default:
        throw new Error(`ct-path: match '${opt}' not understood (the packet left the conntrack fast path?): ${rule}`);
    }
    if (neg) ok = !ok;
    if (!ok) hit = false;
    i += take;
  }
  return { hit, target: [] };
}

/** Walks the packet from `start` (a built-in chain) to its verdict. */
export function walk(chains: ReadonlyMap<string, readonly string[]>, start: string, p0: Packet, limit = 10_000): Walk {
  const p = { ...p0 };
  const path: string[] = [];
  // The call stack: [chain, next rule index]; -g replaces the top.
  const stack: [string, number][] = [[start, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const rules = chains.get(top[0]);
    if (!rules) throw new Error(`ct-path: no chain ${top[0]}`);
    if (top[1] >= rules.length) {
      stack.pop();
      if (!stack.length) throw new Error(`ct-path: fell off ${start} (its policy decides; not a Palisade verdict)`);
      continue;
    }
    const idx = top[1]++;
    path.push(`${top[0]}:${idx}`);
    if (path.length > limit) throw new Error("ct-path: loop");
    const { hit, target } = evaluate(rules[idx]!, p);
    if (!hit) continue;
    if (target.length === 0) continue;
    const [kind, name] = [target[0]!, target[1]!];
    if (name === "ACCEPT" || name === "DROP") return { verdict: name, lookups: path.length, path };
    if (name === "RETURN") { stack.pop(); if (!stack.length) throw new Error("ct-path: RETURN from the start chain"); continue; }
    if (name === "CONNMARK" || name === "MARK") {
      const at = target.indexOf("--set-xmark");
      if (at < 0) throw new Error(`ct-path: ${target.join(" ")} not understood`);
      if (name === "CONNMARK") {
        const [v, m] = target[at + 1]!.split("/");
        p.ctmark = ((p.ctmark & ~num(m!)) ^ num(v!)) >>> 0;
      }
      continue;
    }
    if (name === "NFLOG" || name === "LOG") continue;
    if (!chains.has(name)) throw new Error(`ct-path: target ${name} not understood`);
    if (kind === "-g") stack[stack.length - 1] = [name, 0];
    else stack.push([name, 0]);
  }
  throw new Error("ct-path: no verdict");
}
