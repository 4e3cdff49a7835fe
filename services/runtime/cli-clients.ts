// What every CLI does to reach the controller: --controller validated, TLS
// settings resolved (flags over environment), a warning when plaintext leaves
// the machine, then the clients.
import type * as grpc from "@grpc/grpc-js";
import { Command } from "commander";
import { envDefault, parseHostPort } from "./cli-env.js";
import { addTlsOptions, channelCredentials, loadTls, tlsFlagsOf, warnIfPlaintextRemote } from "./tls.js";
import { createClients } from "../contract/clients.js";

export function cliClients(program: Command, bin: string, options: grpc.ClientOptions = {}) {
  const address = program.opts<{ controller: string }>().controller;
  parseHostPort(address, "--controller");
  const tls = loadTls(tlsFlagsOf(program));
  warnIfPlaintextRemote(tls, address, bin);
  return createClients(address, channelCredentials(tls), options);
}

/** A CLI that talks to a controller: --controller (env PALISADE_CONTROLLER) and the TLS flags. */
export function controllerProgram(name: string, description: string, opts: { controllerHelp: string; certificateHelp: string }): Command {
  const program = new Command(name)
    .description(description)
    .option("--controller <addr>", `${opts.controllerHelp} (env PALISADE_CONTROLLER)`, envDefault("PALISADE_CONTROLLER", "127.0.0.1:50051"))
    .showHelpAfterError();
  addTlsOptions(program, opts.certificateHelp);
  return program;
}
