// Minimal IP address / CIDR arithmetic, shared by validation (normalising
// what users write), rendering, and the trace evaluator (containment).
// Addresses are held as bigint so IPv4 and IPv6 share one code path.
import { isIPv4, isIPv6 } from "node:net";
import type { IpVersion } from "./types.js";

export interface Cidr {
  version: IpVersion;
  /** Network address (host bits cleared). */
  addr: bigint;
  prefix: number;
}

const BITS: Record<IpVersion, number> = { 4: 32, 6: 128 };

export function parseAddress(text: string): { version: IpVersion; addr: bigint } | undefined {
  if (isIPv4(text)) {
    const parts = text.split(".").map(Number);
    // node's isIPv4 accepts only dotted-quad decimal, no leading zeros.
    return { version: 4, addr: parts.reduce((a, p) => (a << 8n) | BigInt(p), 0n) };
  }
  if (isIPv6(text) && !text.includes("%")) {
    let head = text;
    let v4tail: bigint | undefined;
    const lastColon = head.lastIndexOf(":");
    if (head.slice(lastColon + 1).includes(".")) {
      const v4 = parseAddress(head.slice(lastColon + 1));
      if (!v4 || v4.version !== 4) return undefined;
      v4tail = v4.addr;
      head = head.slice(0, lastColon + 1) + "0:0";
    }
    const [left, right] = head.includes("::") ? head.split("::") : [head, undefined];
    const l = left ? left.split(":") : [];
    const r = right ? right.split(":") : [];
    const fill = right === undefined ? 0 : 8 - l.length - r.length;
    const groups = [...l, ...Array(fill).fill("0"), ...r];
    if (groups.length !== 8) return undefined;
    let addr = groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g, 16)), 0n);
    if (v4tail !== undefined) addr = (addr & ~0xffffffffn) | v4tail;
    return { version: 6, addr };
  }
  return undefined;
}

export function formatAddress(version: IpVersion, addr: bigint): string {
  if (version === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join(".");
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((addr >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, leftmost on ties.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Parses "addr/prefix" or a bare address (a host route). Host bits are cleared. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  const a = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!a) return undefined;
  const bits = BITS[a.version];
  let prefix = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > bits) return undefined;
  }
  return { version: a.version, addr: a.addr & maskOf(a.version, prefix), prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatAddress(c.version, c.addr)}/${c.prefix}`;
}

function maskOf(version: IpVersion, prefix: number): bigint {
  const bits = BigInt(BITS[version]);
  const all = (1n << bits) - 1n;
  return prefix === 0 ? 0n : (all >> (bits - BigInt(prefix))) << (bits - BigInt(prefix)) & all;
}

export function cidrContains(c: Cidr, version: IpVersion, addr: bigint): boolean {
  return c.version === version && (addr & maskOf(version, c.prefix)) === c.addr;
}
