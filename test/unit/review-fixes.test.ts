// Regression tests for defects found in review.
import { describe, expect, it } from "vitest";
import { canonicalMember, parseIpsetSave } from "../../services/driver/kernel-state.js";
import { ValidationError, parseDocuments } from "../../services/model/index.js";

function refuse(rule: Record<string, unknown>): string {
  try {
    parseDocuments([{ kind: "Profile", id: "x", inbound_rules: [rule] }]);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as Error).message;
  }
  throw new Error("accepted");
}

describe("validation found by review", () => {
  it("inherited object keys are not protocol names", () => {
    expect(refuse({ protocol: "constructor" })).toContain("inbound_rules[0].protocol");
    expect(refuse({ protocol: "__proto__" })).toContain("inbound_rules[0].protocol");
    expect(refuse({ "!protocol": "toString" })).toContain("inbound_rules[0].!protocol");
  });

  it("IPv6 extension headers are refused as protocols where the rule reaches IPv6", () => {
    expect(refuse({ protocol: 44 })).toContain("IPv6 extension header");
    expect(refuse({ protocol: 43, ip_version: 6 })).toContain("IPv6 extension header");
    expect(() => parseDocuments([{ kind: "Profile", id: "x", inbound_rules: [{ protocol: 43, ip_version: 4 }] }])).not.toThrow();
  });

  it("two long port lists whose product would explode are refused; one long list is fine", () => {
    const many = Array.from({ length: 300 }, (_, i) => i + 1); // 20 x 20 = 400 lines
    expect(refuse({ protocol: "tcp", src_ports: many, dst_ports: many })).toContain("split this rule");
    expect(() => parseDocuments([{ kind: "Profile", id: "x", inbound_rules: [{ protocol: "tcp", dst_ports: Array.from({ length: 512 }, (_, i) => `${2 * i + 1}:${2 * i + 2}`) }] }])).not.toThrow();
  });
});

describe("kernel members compare in the model's spelling", () => {
  it("IPv4-mapped IPv6 as ipset prints it equals the model's canonical text", () => {
    expect(canonicalMember("::ffff:198.18.0.1")).toBe("::ffff:c612:1");
    expect(canonicalMember("2001:DB8:0::1")).toBe("2001:db8::1");
    expect(canonicalMember("10.0.0.0/8")).toBe("10.0.0.0/8");
    const sets = parseIpsetSave("create pal6t-a hash:net family inet6 hashsize 1024 maxelem 1048576\nadd pal6t-a ::ffff:198.18.0.1\n");
    expect([...sets.get("pal6t-a")!.members]).toEqual(["::ffff:c612:1"]);
  });
});
