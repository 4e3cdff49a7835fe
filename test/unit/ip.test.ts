// IP address / CIDR arithmetic (services/model/ip.ts).
import { describe, expect, it } from "vitest";
import { cidrContains, formatAddress, formatCidr, parseAddress, parseCidr } from "../../services/model/ip.js";

const canon = (s: string) => {
  const c = parseCidr(s);
  return c ? formatCidr(c) : undefined;
};

describe("parseAddress", () => {
  it("parses IPv4 dotted quads into a 32-bit value", () => {
    expect(parseAddress("1.2.3.4")).toEqual({ version: 4, addr: 0x01020304n });
    expect(parseAddress("0.0.0.0")).toEqual({ version: 4, addr: 0n });
    expect(parseAddress("255.255.255.255")).toEqual({ version: 4, addr: 0xffffffffn });
  });

  it("parses IPv6 with and without :: compression, any case", () => {
    expect(parseAddress("::")).toEqual({ version: 6, addr: 0n });
    expect(parseAddress("::1")).toEqual({ version: 6, addr: 1n });
    expect(parseAddress("1::")).toEqual({ version: 6, addr: 1n << 112n });
    expect(parseAddress("2001:DB8::1")).toEqual({ version: 6, addr: (0x20010db8n << 96n) | 1n });
    expect(parseAddress("2001:db8:0:0:0:0:0:1")).toEqual(parseAddress("2001:db8::1"));
  });

  it("parses IPv4-mapped / embedded forms (::ffff:1.2.3.4) as the same IPv6 value as the hex form", () => {
    const a = parseAddress("::ffff:1.2.3.4");
    expect(a).toEqual({ version: 6, addr: 0xffff01020304n });
    expect(a).toEqual(parseAddress("::ffff:102:304"));
    expect(parseAddress("64:ff9b::198.18.0.1")).toEqual(parseAddress("64:ff9b::c612:1"));
  });

  it.each([
    "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", " 1.2.3.4", "1.2.3.4 ", "", "abc",
    "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "::ffff:256.1.1.1", "2001:db8:::1", "g::1",
  ])("refuses %j", (s) => {
    expect(parseAddress(s)).toBeUndefined();
  });
});

describe("formatAddress (RFC 5952)", () => {
  it.each([
    [4, 0x01020304n, "1.2.3.4"],
    [4, 0n, "0.0.0.0"],
    [6, 0n, "::"],
    [6, 1n, "::1"],
    [6, 1n << 112n, "1::"],
    // longest run of zero groups is compressed
    [6, parseAddress("2001:db8:0:1:0:0:0:1")!.addr, "2001:db8:0:1::1"],
    // a single zero group is not compressed
    [6, parseAddress("2001:db8:0:1:1:1:1:1")!.addr, "2001:db8:0:1:1:1:1:1"],
    // tie between two runs of equal length: the leftmost wins
    [6, parseAddress("2001:0:0:1:0:0:1:1")!.addr, "2001::1:0:0:1:1"],
    // leading zeros inside groups dropped, lower-case hex
    [6, parseAddress("2001:0DB8:00AB::0001")!.addr, "2001:db8:ab::1"],
  ] as const)("v%d %s -> %s", (v, addr, text) => {
    expect(formatAddress(v, addr)).toBe(text);
  });
});

describe("parseCidr / formatCidr", () => {
  it("clears host bits (IPv4)", () => {
    expect(parseCidr("10.1.2.3/8")).toEqual({ version: 4, addr: 0x0a000000n, prefix: 8 });
    expect(canon("10.1.2.3/8")).toBe("10.0.0.0/8");
    expect(canon("192.168.1.255/23")).toBe("192.168.0.0/23");
    expect(canon("198.18.1.2/32")).toBe("198.18.1.2/32");
    expect(canon("1.2.3.4/0")).toBe("0.0.0.0/0");
  });

  it("clears host bits and compresses (IPv6)", () => {
    expect(canon("2001:DB8:0:0:0:0:0:1/64")).toBe("2001:db8::/64");
    expect(canon("2001:db8:abcd:12ff::1/56")).toBe("2001:db8:abcd:1200::/56");
    expect(canon("2001:db8::1/128")).toBe("2001:db8::1/128");
    expect(canon("::ffff:1.2.3.4/120")).toBe("::ffff:102:300/120");
    expect(canon("ffff::1/0")).toBe("::/0");
  });

  it("treats a bare address as a host route", () => {
    expect(parseCidr("1.2.3.4")).toEqual({ version: 4, addr: 0x01020304n, prefix: 32 });
    expect(parseCidr("::1")).toEqual({ version: 6, addr: 1n, prefix: 128 });
  });

  it.each([
    "256.1.1.1/32", "1.2.3.4/33", "1.2.3.4/ 8", "1.2.3.4 /8", "1.2.3.4/", "/8", "1.2.3.4/-1", "1.2.3.4/8/8",
    "1.2.3.4/1000", "2001:db8::/129", "fe80::1%eth0", "fe80::1%eth0/64", "1.2.3.4/0x8", "",
  ])("refuses %j", (s) => {
    expect(parseCidr(s)).toBeUndefined();
  });
});

describe("cidrContains", () => {
  const v4 = (s: string) => parseAddress(s)!.addr;
  it("IPv4 containment at the prefix boundary", () => {
    const c = parseCidr("10.0.0.0/8")!;
    expect(cidrContains(c, 4, v4("10.0.0.0"))).toBe(true);
    expect(cidrContains(c, 4, v4("10.255.255.255"))).toBe(true);
    expect(cidrContains(c, 4, v4("11.0.0.0"))).toBe(false);
    expect(cidrContains(c, 4, v4("9.255.255.255"))).toBe(false);
    const host = parseCidr("198.18.1.2/32")!;
    expect(cidrContains(host, 4, v4("198.18.1.2"))).toBe(true);
    expect(cidrContains(host, 4, v4("198.18.1.3"))).toBe(false);
  });

  it("a /0 contains every address of its own family only", () => {
    expect(cidrContains(parseCidr("0.0.0.0/0")!, 4, v4("203.0.113.9"))).toBe(true);
    expect(cidrContains(parseCidr("0.0.0.0/0")!, 6, 1n)).toBe(false);
    expect(cidrContains(parseCidr("::/0")!, 6, parseAddress("2001:db8::5")!.addr)).toBe(true);
    expect(cidrContains(parseCidr("::/0")!, 4, v4("1.2.3.4"))).toBe(false);
  });

  it("IPv6 containment", () => {
    const c = parseCidr("2001:db8:1::/48")!;
    expect(cidrContains(c, 6, parseAddress("2001:db8:1:ffff::1")!.addr)).toBe(true);
    expect(cidrContains(c, 6, parseAddress("2001:db8:2::1")!.addr)).toBe(false);
    // The IPv4 value 0x20010db8 is not an IPv6 address in the range.
    expect(cidrContains(c, 4, 0x20010db8n)).toBe(false);
  });

  it("a CIDR written with host bits contains the same addresses as its canonical form", () => {
    const a = parseCidr("10.1.2.3/16")!;
    expect(cidrContains(a, 4, v4("10.1.200.1"))).toBe(true);
    expect(cidrContains(a, 4, v4("10.2.0.1"))).toBe(false);
  });
});
