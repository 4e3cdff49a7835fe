// A small classifier over a host's rendered state (DESIGN §6.5), for unit
// tests of the calculation core: which chain a packet reaches.
import type { PlainHostState } from "./host-state.js";
import { REPLY_CHECK_MARK, setTypeOf } from "../../services/contract/dataplane-names.js";
import { cidrContains, parseCidr } from "../../services/model/ip.js";

const REPLY_CHECK = `0x${REPLY_CHECK_MARK.toString(16)}`;

/**
 * Follows a packet through the rendered entry chains as the kernel would:
 * set matches ((address, interface) pairs; (address, MAC) for MAC sets),
 * interface, source net and MAC matches, calls, gotos, RETURN, DROP. Returns
 * the workload chain the packet is handed to with the profile chains its
 * positions lead to (`pal-cf[pal-po-a,pal-po-b]`, classOf), "RETURN", or
 * "DROP:<chain>".
 */
export function classify(st: PlainHostState, family: 4 | 6, dir: "from" | "to", addr: string, iface: string, mac?: string, opts: { reply?: boolean } = {}): string {
  const inNet = (cidr: string) => {
    const c = parseCidr(cidr.includes("/") ? cidr : `${cidr}/${family === 4 ? 32 : 128}`);
    const a = parseCidr(addr);
    return !!c && !!a && cidrContains(c, a.version, a.addr);
  };
  const inSet = (name: string): boolean => {
    const members = st.sets[name]?.members ?? [];
    if (setTypeOf(name) === "list:set") return members.some(inSet); // any member set
    if (setTypeOf(name) === "bitmap:ip,mac") return mac !== undefined && members.includes(`${addr},${mac.toUpperCase()}`);
    // hash:net,iface: the most specific net holding the address, with the interface.
    return members.some((m) => {
      const comma = m.lastIndexOf(",");
      return m.slice(comma + 1) === iface && inNet(m.slice(0, comma));
    });
  };
  const walk = (chain: string, depth: number): string => {
    if (depth > 20) throw new Error("loop");
    const rules = st.chains[`${family}:${chain}`];
    if (!rules) throw new Error(`no chain ${chain}`);
    for (const r of rules) {
      const set = /-m set (! )?--match-set (\S+) (src,src|dst,dst)/.exec(r);
      if (set && inSet(set[2]!) === !!set[1]) continue;
      const ifm = /-i (\S+?)(\+?) /.exec(r);
      if (ifm && !(ifm[2] ? iface.startsWith(ifm[1]!) : iface === ifm[1])) continue;
      const src = /-s (\S+) /.exec(r);
      if (src && !inNet(src[1]!)) continue;
      const macm = /-m mac (! )?--mac-source (\S+)/.exec(r);
      if (macm && (macm[2]!.toUpperCase() === mac?.toUpperCase()) === !!macm[1]) continue;
      const t = /-([gj]) (\S+)$/.exec(r);
      if (!t || t[2] === "MARK") continue;
      if (t[2] === "DROP") return `DROP:${chain}`;
      if (t[2] === "RETURN") return "RETURN";
      // The workload chain: the packet is classified, once its MAC check
      // (called first) passes; the position chains say its profile list.
      if (t[2] === "pal-cf" || t[2] === "pal-ct") {
        // A new packet carries no REPLY_CHECK_MARK: the re-check divert
        // (DESIGN §6.5, "Reply-direction re-check chains") passes it by.
        const all = st.chains[`${family}:${t[2]}`]!;
        const divert = all.find((r) => r.startsWith(`-m mark --mark ${REPLY_CHECK}/${REPLY_CHECK} `));
        // A reply-direction re-check (opts.reply) is diverted to the mirrored chain, which checks no MAC.
        const chain = opts.reply ? /-g (\S+)$/.exec(divert ?? "")?.[1] ?? "no-divert" : t[2]!;
        const rules = opts.reply ? st.chains[`${family}:${chain}`] ?? [] : all.filter((r) => r !== divert);
        if (rules.includes("-j pal-from-wl-mac")) {
          const mac = walk("pal-from-wl-mac", depth + 1);
          if (mac !== "RETURN") return mac;
        }
        const profiles: string[] = [];
        for (const r of rules) {
          const pos = /^-j (pal-[cr][ft]\d+)$/.exec(r);
          if (!pos) continue;
          const got = position(pos[1]!, depth + 1);
          // Fell off the position's chain: back here, on to the next position.
          if (got === undefined) continue;
          if (got === "END") break;
          profiles.push(got);
          if (got === "missing" || got.startsWith("DROP:")) break;
        }
        return `${chain}[${profiles.join(",")}]`;
      }
      const sub = walk(t[2]!, depth + 1);
      if (t[1] === "g" || sub !== "RETURN") return sub;
    }
    return "RETURN";
  };
  /**
   * A position chain: the profile chain it goes to, "missing", "DROP:<node>",
   * "END" (no profile there: the root drops, d), or undefined (the chain
   * fell off without a verdict: the workload chain goes on to the next
   * position, as the kernel would).
   */
  const position = (chain: string, depth: number): string | undefined => {
    if (depth > 20) throw new Error("loop");
    for (const r of st.chains[`${family}:${chain}`] ?? []) {
      const set = /-m set (! )?--match-set (\S+) (src,src|dst,dst)/.exec(r);
      if (set && inSet(set[2]!) === !!set[1]) continue;
      const t = /-([gj]) (\S+)$/.exec(r);
      if (!t) continue;
      // A root's last line: no profile at this position (default deny), the end of the list.
      if (t[2] === "DROP") return set ? "missing" : /^pal-[cr][ft]\d+$/.test(chain) ? "END" : `DROP:${chain}`;
      if (/^pal-[cr][ft]\d+-/.test(t[2]!)) return position(t[2]!, depth + 1);
      if (t[1] === "g") return t[2]!;
    }
    return undefined;
  };
  return walk(dir === "from" ? "pal-from-wl-dispatch" : "pal-to-wl-dispatch", 0);
}

/** What classify says of an endpoint with this ordered profile list (chain names of its profiles, or "missing"). */
export function classOf(dir: "from" | "to", profileChains: readonly string[], opts: { reply?: boolean } = {}): string {
  return `${dir === "from" ? (opts.reply ? "pal-rf" : "pal-cf") : opts.reply ? "pal-rt" : "pal-ct"}[${profileChains.join(",")}]`;
}
