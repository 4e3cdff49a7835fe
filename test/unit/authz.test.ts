// Identity from certificates and the access table (runtime/tls.ts, controller/authz.ts).
import type { PeerCertificate } from "node:tls";
import { describe, expect, it } from "vitest";
import { identityFromCertificate, loadTls, warnIfPlaintextRemote } from "../../services/runtime/tls.js";
import { FLOW_ACCESS, POLICY_ACCESS, STATUS_ACCESS, SYNC_ACCESS, checkAccess } from "../../services/controller/authz.js";

const cert = (subject: Record<string, string | string[]>) => ({ subject } as unknown as PeerCertificate);

describe("identityFromCertificate", () => {
  it("reads role from OU and name from CN", () => {
    expect(identityFromCertificate(cert({ O: "palisade", OU: "host", CN: "hv1" }))).toEqual({ role: "host", name: "hv1" });
    expect(identityFromCertificate(cert({ O: "palisade", OU: ["ops", "admin"], CN: "alice" }))).toEqual({ role: "admin", name: "alice" });
  });

  it("refuses no certificate, another organisation, no role, two roles, or no CN", () => {
    expect(identityFromCertificate(undefined)).toBe("no client certificate");
    expect(identityFromCertificate(cert({ OU: "admin", CN: "x" }))).toMatch(/not a Palisade certificate \(O=palisade\)/);
    expect(identityFromCertificate(cert({ O: "etcd", OU: "admin", CN: "x" }))).toMatch(/not a Palisade certificate/);
    expect(identityFromCertificate(cert({ O: "palisade", OU: "tenant", CN: "x" }))).toMatch(/no single Palisade role/);
    expect(identityFromCertificate(cert({ O: "palisade", OU: ["admin", "host"], CN: "x" }))).toMatch(/no single Palisade role/);
    expect(identityFromCertificate(cert({ O: "palisade", OU: "controller", CN: "palisade-controller" }))).toMatch(/no single Palisade role/);
    expect(identityFromCertificate(cert({ O: "palisade", OU: "reader" }))).toMatch(/no single CN/);
  });
});

describe("access table", () => {
  it("only admin writes; admin and reader read; hosts only sync", () => {
    const writes = Object.entries(POLICY_ACCESS).filter(([, roles]) => roles.length === 1 && roles[0] === "admin").map(([m]) => m).sort();
    expect(writes).toEqual(["apply", "delete"]);
    for (const [m, roles] of [...Object.entries(POLICY_ACCESS), ...Object.entries(STATUS_ACCESS), ...Object.entries(FLOW_ACCESS)]) {
      expect(roles, m).not.toContain("host");
      if (m !== "apply" && m !== "delete") expect([...roles].sort(), m).toEqual(["admin", "reader"]);
    }
    expect(SYNC_ACCESS.sync).toEqual(["host"]);
  });

  it("checkAccess names the role, the caller and the method", () => {
    expect(checkAccess({ role: "admin", name: "a" }, POLICY_ACCESS.apply, "P/apply")).toBeUndefined();
    expect(checkAccess({ role: "reader", name: "mon" }, POLICY_ACCESS.apply, "P/apply")).toBe("role 'reader' (mon) may not call P/apply");
    expect(checkAccess("no client certificate", POLICY_ACCESS.trace, "P/trace")).toBe("no client certificate");
  });
});

describe("loadTls", () => {
  it("needs --insecure or all three files, never both", () => {
    expect(loadTls({ insecure: true })).toBeUndefined();
    expect(() => loadTls({})).toThrow(/TLS is required/);
    expect(() => loadTls({ tlsCert: "a", tlsKey: "b" })).toThrow(/needs all of/);
    expect(() => loadTls({ insecure: true, tlsCa: "c" })).toThrow(/cannot be combined/);
    expect(() => loadTls({ tlsCert: "/nonexistent/a", tlsKey: "/nonexistent/b", tlsCa: "/nonexistent/c" })).toThrow(/--tls-cert: cannot read \/nonexistent\/a: ENOENT/);
    expect(() => loadTls({ tlsCert: "/etc/hostname", tlsKey: "/etc/hostname", tlsCa: "/etc/hostname" })).toThrow(/is not a PEM file/);
  });
});

describe("warnIfPlaintextRemote", () => {
  it("warns for plaintext leaving the machine, not for loopback, Unix sockets or TLS", () => {
    const lines: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => { lines.push(String(chunk)); return true; }) as typeof process.stderr.write;
    try {
      for (const a of ["127.0.0.1:50051", "localhost:1", "[::1]:50051", "unix:/run/p.sock"]) warnIfPlaintextRemote(undefined, a, "x");
      warnIfPlaintextRemote({ cert: Buffer.from(""), key: Buffer.from(""), ca: Buffer.from("") }, "10.0.0.5:50051", "x");
      expect(lines).toEqual([]);
      warnIfPlaintextRemote(undefined, "10.0.0.5:50051", "palisadectl");
      expect(lines).toEqual(["palisadectl: warning: plaintext gRPC to 10.0.0.5:50051 (--insecure): not authenticated, not encrypted\n"]);
    } finally {
      process.stderr.write = write;
    }
  });
});
