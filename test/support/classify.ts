// A small classifier over a host's rendered state (DESIGN §6.5), for unit
// tests of the calculation core: which chain a packet reaches.
import type { PlainHostState } from "./host-state.js";

/**
 * Follows a packet through the rendered entry chains as the kernel would:
 * set matches ((address, interface) pairs; (address, MAC) for MAC sets),
 * interface, source net and MAC matches, calls, gotos, RETURN, DROP. Returns
 * the class chain the packet is handed to, "RETURN", or "DROP:<chain>".
 */
export function classify(st: PlainHostState, family: 4 | 6, dir: "from" | "to", addr: string, iface: string, mac?: string): string {
  const inSet = (name: string): boolean => {
    const members = st.sets[name]?.members ?? [];
    if (name === "pal4mac") return members.some(inSet); // list:set: any member set
    return name.startsWith("pal4m-") ? mac !== undefined && members.includes(`${addr},${mac.toUpperCase()}`) : members.includes(`${addr},${iface}`);
  };
  const inNet = (cidr: string) => {
    const [net, len] = cidr.split("/");
    const n = (a: string) => a.split(".").reduce((x, o) => x * 256 + Number(o), 0);
    const mask = 2 ** 32 - 2 ** (32 - Number(len));
    return family === 4 && (n(addr) & mask) >>> 0 === (n(net!) & mask) >>> 0;
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
      const macm = /-m mac ! --mac-source (\S+)/.exec(r);
      if (macm && macm[1]!.toUpperCase() === mac?.toUpperCase()) continue;
      const t = /-([gj]) (\S+)$/.exec(r);
      if (!t || t[2] === "MARK") continue;
      if (t[2] === "DROP") return `DROP:${chain}`;
      if (t[2] === "RETURN") return "RETURN";
      // A class chain: the packet is classified, once its MAC check (called first) passes.
      if (/^pal-c[ft]_/.test(t[2]!)) {
        const first = /^-j (\S+)$/.exec(st.chains[`${family}:${t[2]}`]![0]!)?.[1];
        if (first === "pal-from-wl-mac") {
          const mac = walk(first, depth + 1);
          if (mac !== "RETURN") return mac;
        }
        return t[2]!;
      }
      const sub = walk(t[2]!, depth + 1);
      if (t[1] === "g" || sub !== "RETURN") return sub;
    }
    return "RETURN";
  };
  return walk(dir === "from" ? "pal-from-wl-dispatch" : "pal-to-wl-dispatch", 0);
}

