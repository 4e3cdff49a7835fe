// Transport security shared by every binary: mutual TLS with one private CA,
// or plaintext only when asked for explicitly.
//
// Design note — identity lives in the certificate subject, nowhere else:
//   O=palisade, OU=<role>, CN=<name>
// (O=palisade is required too: defence in depth should the CA be shared)
// with role one of
//   host    a hypervisor's driver; CN is the host's name in the model. It may
//           open the sync stream for that host only (and so report status
//           only for it). It may not read policy.
//   admin   reads and changes policy (palisadectl, the OpenStack adapter).
//   reader  reads policy and status, traces (monitoring, on-call humans).
// The controller's own certificate (OU=controller) is a server identity; it
// carries no client role. A certificate with no role, or more than one, is
// refused. deploy/tls/palisade-certs.sh makes certificates of this shape.
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import type { Command } from "commander";
import { UsageError, envDefault } from "./cli-env.js";

export type Role = "host" | "admin" | "reader";
export const ROLES: readonly Role[] = ["host", "admin", "reader"];

export interface Identity {
  role: Role;
  /** CN: the host name for role host, a person or service otherwise. */
  name: string;
}

/** PEM material; absent means plaintext (the caller decided that explicitly). */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

export interface TlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  insecure?: boolean;
}

/** The options every binary takes (env PALISADE_TLS_CERT/_KEY/_CA, PALISADE_INSECURE=1); flags win. */
export function addTlsOptions(cmd: Command, what: string): Command {
  const insecure = envDefault("PALISADE_INSECURE");
  return cmd
    .option("--tls-cert <file>", `${what} certificate, PEM (env PALISADE_TLS_CERT)`, envDefault("PALISADE_TLS_CERT"))
    .option("--tls-key <file>", "its private key, PEM (env PALISADE_TLS_KEY)", envDefault("PALISADE_TLS_KEY"))
    .option("--tls-ca <file>", "the Palisade CA certificate, PEM (env PALISADE_TLS_CA)", envDefault("PALISADE_TLS_CA"))
    .option("--insecure", "plaintext gRPC, no authentication: labs and tests only (env PALISADE_INSECURE=1)",
      insecure !== undefined && /^(1|true|yes|on)$/i.test(insecure));
}

/**
 * The TLS settings as given, with "flags win over the environment" applied
 * across the two modes: --insecure on the command line beats TLS files from
 * PALISADE_TLS_*, and TLS files on the command line beat PALISADE_INSECURE.
 * Both on the command line (or both in the environment) stay for loadTls to
 * refuse.
 */
export function tlsFlagsOf(cmd: Command): TlsFlags {
  const o = cmd.opts<TlsFlags>();
  const fromCli = (k: string) => cmd.getOptionValueSource(k) === "cli";
  const cliTls = ["tlsCert", "tlsKey", "tlsCa"].some(fromCli);
  const cliInsecure = fromCli("insecure");
  if (cliInsecure && !cliTls) return { insecure: true };
  if (cliTls && !cliInsecure) return { tlsCert: o.tlsCert, tlsKey: o.tlsKey, tlsCa: o.tlsCa, insecure: false };
  return o;
}

export function readPem(file: string, flag: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (e) {
    throw new Error(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!data.includes("-----BEGIN ")) throw new Error(`${flag}: ${file} is not a PEM file`);
  return data;
}

/**
 * Flags -> material. TLS needs all three files; plaintext needs --insecure and
 * no TLS file (mixing them is a mistake worth refusing, not guessing about).
 * Returns undefined for plaintext.
 */
export function loadTls(flags: TlsFlags): TlsMaterial | undefined {
  const given = [flags.tlsCert, flags.tlsKey, flags.tlsCa].filter((f) => f !== undefined && f !== "");
  if (flags.insecure) {
    if (given.length) throw new UsageError("--insecure cannot be combined with --tls-cert/--tls-key/--tls-ca");
    return undefined;
  }
  if (given.length === 0) throw new UsageError("TLS is required: give --tls-cert, --tls-key and --tls-ca (or --insecure for plaintext)");
  if (given.length !== 3) throw new UsageError("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  return { cert: readPem(flags.tlsCert!, "--tls-cert"), key: readPem(flags.tlsKey!, "--tls-key"), ca: readPem(flags.tlsCa!, "--tls-ca") };
}

/** The controller requires a client certificate signed by our CA. */
export function serverCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** Clients verify the controller against our CA and present their own certificate. */
export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
}

function one(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Role and name from a verified peer certificate; a reason string when it carries none. */
export function identityFromCertificate(cert: PeerCertificate | undefined): Identity | string {
  if (!cert || !cert.subject) return "no client certificate";
  // O=palisade as well as the CA: a CA shared with other uses (an
  // organisation's, etcd's) must not turn their OU=admin into ours.
  if (!one(cert.subject.O).includes("palisade")) return "client certificate is not a Palisade certificate (O=palisade)";
  const roles = one(cert.subject.OU).filter((ou): ou is Role => (ROLES as readonly string[]).includes(ou));
  if (roles.length !== 1) return "client certificate carries no single Palisade role (OU=host, admin or reader)";
  const names = one(cert.subject.CN);
  if (names.length !== 1 || !names[0]) return "client certificate has no single CN";
  return { role: roles[0]!, name: names[0] };
}

/** Server side: who is calling, or why we cannot tell. */
export function peerIdentity(call: { getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null }): Identity | string {
  return identityFromCertificate(call.getAuthContext()?.sslPeerCertificate);
}

/**
 * grpc-js passes the target host as the TLS server name even when it is an IP
 * address, and Node warns (DEP0123) on every connection. Verification is not
 * affected (IP SANs are checked); the warning only clutters operators'
 * terminals, so the binaries drop that one warning and keep all others.
 */
export function silenceIpServerNameWarning(): void {
  const emit = process.emitWarning.bind(process) as (...a: unknown[]) => void;
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === "DEP0123") return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/**
 * CLIs warn on stderr when plaintext leaves the machine: loopback and Unix
 * sockets (labs, tests, the quickstart) stay quiet.
 */
export function warnIfPlaintextRemote(tls: TlsMaterial | undefined, address: string, bin: string): void {
  if (tls || address.startsWith("unix:")) return;
  const host = address.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  if (host === "localhost" || host === "::1" || /^127\./.test(host)) return;
  process.stderr.write(`${bin}: warning: plaintext gRPC to ${address} (--insecure): not authenticated, not encrypted\n`);
}
