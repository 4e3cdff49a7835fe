// A streaming reader of `tcpdump -i nflog:GROUP -w -` output (DESIGN §6.12):
// pcap with link type NFLOG (239), then the IP and transport headers of each
// reported packet. Pure: bytes in, packets out; whatever does not parse is
// counted, never thrown.
//
// Why pcap and not tcpdump's text: the pcap framing is a stable, documented
// binary format (tcpdump's text changes between versions and escapes the
// prefix), and NFLOG's TLVs carry exactly what a report needs: the prefix,
// the in/out interface indices (and, for a bridged frame, the bridge ports
// it crossed), the packet.

import type { Packet } from "../../model/index.js";
import { formatAddress } from "../../model/index.js";

/** pcap link type of NFLOG captures. */
export const LINKTYPE_NFLOG = 239;

// NFLOG TLV types (linux/netfilter/nfnetlink_log.h, NFULA_*).
const NFULA_PACKET_HDR = 1;
const NFULA_IFINDEX_INDEV = 4;
const NFULA_IFINDEX_OUTDEV = 5;
const NFULA_IFINDEX_PHYSINDEV = 6;
const NFULA_IFINDEX_PHYSOUTDEV = 7;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;

export interface NflogPacket {
  /** Capture time (Unix ms). */
  timeMs: number;
  /** NF_INET_* hook (1 input, 2 forward, 3 output). */
  hook?: number;
  prefix: string;
  indev?: number;
  outdev?: number;
  /**
   * A bridged frame's bridge ports (br_netfilter): indev/outdev are then the
   * bridge, and these the taps it came in and goes out through.
   */
  physindev?: number;
  physoutdev?: number;
  /** The IP packet (possibly truncated to the rule's --nflog-size). */
  payload?: Buffer;
}

/**
 * The interfaces a report point is judged on (ifindex, 0 = none): the
 * bridge port when the frame crossed a bridge (its tap is the workload's
 * interface; the bridge is every port's), else the routed in/out device.
 */
export function pointInterfaces(p: Pick<NflogPacket, "indev" | "outdev" | "physindev" | "physoutdev">): { indev: number; outdev: number } {
  return { indev: p.physindev || p.indev || 0, outdev: p.physoutdev || p.outdev || 0 };
}

/** A packet as the evaluator behind trace takes it, with its family. */
export interface FlowTuple extends Packet {
  ipVersion: 4 | 6;
}

/**
 * Incremental pcap parser: feed() any chunking of the stream. The global
 * header fixes byte order and link type; a wrong link type or an absurd
 * record length makes the reader give up on the stream (`failed`), since
 * framing cannot be recovered from the middle of a pcap stream.
 */
export class PcapNflogReader {
  private buf: Buffer = Buffer.alloc(0);
  private little = true;
  private headerRead = false;
  private nanos = false;
  failed: string | undefined;
  /** Records that were not NFLOG packets we could read. */
  malformed = 0;

  feed(chunk: Buffer, out: (p: NflogPacket) => void): void {
    if (this.failed) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    if (!this.headerRead) {
      if (this.buf.length < 24) return;
      const magic = this.buf.readUInt32LE(0);
      if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) this.little = true;
      else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) this.little = false;
      else {
        this.failed = `not a pcap stream (magic 0x${magic.toString(16)})`;
        return;
      }
      this.nanos = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
      const linktype = this.u32(this.buf, 20) & 0x0fffffff;
      if (linktype !== LINKTYPE_NFLOG) {
        this.failed = `pcap link type ${linktype}, expected NFLOG (${LINKTYPE_NFLOG})`;
        return;
      }
      this.headerRead = true;
      off = 24;
    }
    while (this.buf.length - off >= 16) {
      const sec = this.u32(this.buf, off);
      const frac = this.u32(this.buf, off + 4);
      const incl = this.u32(this.buf, off + 8);
      if (incl > 262_144) {
        this.failed = `pcap record of ${incl} bytes`;
        return;
      }
      if (this.buf.length - off - 16 < incl) break;
      const rec = this.buf.subarray(off + 16, off + 16 + incl);
      off += 16 + incl;
      const p = parseNflog(rec, sec * 1000 + (this.nanos ? frac / 1e6 : frac / 1e3), this.little);
      if (p) out(p);
      else this.malformed++;
    }
    // Keep only the unread tail (copied: the chunk may be large).
    this.buf = off === 0 ? this.buf : Buffer.from(this.buf.subarray(off));
  }

  private u32(b: Buffer, o: number): number {
    return this.little ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }
}

/**
 * One NFLOG record: a 4-byte header (family, version, resource id), then
 * TLVs whose length and type are in the capturing host's byte order (as
 * pcap-linktype(7) says for NFLOG) and whose values are in network order.
 * The capturing host wrote the pcap headers in that same order, so the
 * file's magic says it: `little` is the byte order the global header was
 * read in (a capture from a big-endian host has big-endian TLV headers).
 */
export function parseNflog(rec: Buffer, timeMs: number, little: boolean): NflogPacket | undefined {
  if (rec.length < 4) return undefined;
  const p: NflogPacket = { timeMs, prefix: "" };
  let off = 4;
  let sawPrefix = false;
  while (rec.length - off >= 4) {
    const len = little ? rec.readUInt16LE(off) : rec.readUInt16BE(off);
    const type = (little ? rec.readUInt16LE(off + 2) : rec.readUInt16BE(off + 2)) & 0x7fff;
    if (len < 4 || off + len > rec.length) return undefined;
    const v = rec.subarray(off + 4, off + len);
    switch (type) {
      case NFULA_PACKET_HDR:
        if (v.length >= 3) p.hook = v[2];
        break;
      case NFULA_IFINDEX_INDEV:
        if (v.length >= 4) p.indev = v.readUInt32BE(0);
        break;
      case NFULA_IFINDEX_OUTDEV:
        if (v.length >= 4) p.outdev = v.readUInt32BE(0);
        break;
      case NFULA_IFINDEX_PHYSINDEV:
        if (v.length >= 4) p.physindev = v.readUInt32BE(0);
        break;
      case NFULA_IFINDEX_PHYSOUTDEV:
        if (v.length >= 4) p.physoutdev = v.readUInt32BE(0);
        break;
      case NFULA_PAYLOAD:
        p.payload = Buffer.from(v);
        break;
      case NFULA_PREFIX: {
        const nul = v.indexOf(0);
        p.prefix = v.subarray(0, nul < 0 ? v.length : nul).toString("latin1");
        sawPrefix = true;
        break;
      }
    }
    off += (len + 3) & ~3;
  }
  return sawPrefix ? p : undefined;
}

const PORT_PROTOCOLS = new Set([6, 17, 132, 136]);
// IPv6 extension headers we step over to reach the upper layer, as
// ip6tables' -p does: hop-by-hop, routing, destination options.
const V6_EXT = new Set([0, 43, 60]);

/** An address as the model spells it (formatAddress: IPv6 compressed, lower case). */
function v6text(b: Buffer, o: number): string {
  return formatAddress(6, BigInt(`0x${b.subarray(o, o + 16).toString("hex")}`));
}

/** The flow's identity from an IP packet's headers; undefined if too short or not IP. */
export function parseIpHeaders(b: Buffer): FlowTuple | undefined {
  if (b.length < 1) return undefined;
  const version = b[0]! >> 4;
  let t: FlowTuple;
  let l4: number;
  if (version === 4) {
    if (b.length < 20) return undefined;
    const ihl = (b[0]! & 0x0f) * 4;
    t = { ipVersion: 4, src: [...b.subarray(12, 16)].join("."), dst: [...b.subarray(16, 20)].join("."), protocol: b[9]! };
    // A non-first fragment carries no transport header.
    if ((b.readUInt16BE(6) & 0x1fff) !== 0) return t;
    l4 = ihl;
  } else if (version === 6) {
    if (b.length < 40) return undefined;
    t = { ipVersion: 6, src: v6text(b, 8), dst: v6text(b, 24), protocol: b[6]! };
    l4 = 40;
    for (let hops = 0; V6_EXT.has(t.protocol) && hops < 8; hops++) {
      if (b.length < l4 + 2) return t;
      t.protocol = b[l4]!;
      l4 += (b[l4 + 1]! + 1) * 8;
    }
  } else return undefined;
  if (PORT_PROTOCOLS.has(t.protocol) && b.length >= l4 + 4) {
    t.srcPort = b.readUInt16BE(l4);
    t.dstPort = b.readUInt16BE(l4 + 2);
  } else if ((t.protocol === 1 || t.protocol === 58) && b.length >= l4 + 2) {
    t.icmpType = b[l4]!;
    t.icmpCode = b[l4 + 1]!;
  }
  return t;
}
