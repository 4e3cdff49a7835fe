// What every CLI does to reach the controller: --controller validated, TLS
// settings resolved (flags over environment), a warning when plaintext leaves
// the machine, then the clients.
import type * as grpc from "@grpc/grpc-js";
import type { Command } from "commander";
import { parseHostPort } from "./cli-env.js";
import { channelCredentials, loadTls, tlsFlagsOf, warnIfPlaintextRemote } from "./tls.js";
import { createClients } from "../contract/clients.js";

export function cliClients(program: Command, bin: string, options: grpc.ClientOptions = {}) {
  const address = program.opts<{ controller: string }>().controller;
  parseHostPort(address, "--controller");
  const tls = loadTls(tlsFlagsOf(program));
  warnIfPlaintextRemote(tls, address, bin);
  return createClients(address, channelCredentials(tls), options);
}
