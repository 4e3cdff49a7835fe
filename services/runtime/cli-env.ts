// Flags may also come from environment variables (PALISADE_*); flags win.
// Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage.
import { Command, CommanderError } from "commander";

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {}

export function envDefault(name: string, fallback?: string): string | undefined {
  const v = process.env[name];
  return v !== undefined && v !== "" ? v : fallback;
}

/** Makes commander exit with 2 on usage errors instead of 1. */
export function withUsageExit(cmd: Command): Command {
  cmd.exitOverride((err: CommanderError) => {
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") process.exit(0);
    process.exit(EXIT_USAGE);
  });
  for (const sub of cmd.commands) withUsageExit(sub);
  return cmd;
}

/** HOST:PORT, [V6]:PORT, or unix:/path (a Unix socket crosses network namespaces). */
export function parseHostPort(value: string, flag: string): string {
  if (/^unix:\/[^\s]*$/.test(value)) return value;
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/.test(value)) throw new UsageError(`${flag}: expected HOST:PORT or unix:/path, got '${value}'`);
  return value;
}

export function fail(message: string, code = EXIT_FAILURE): never {
  process.stderr.write(`${message.split("\n")[0]}\n`);
  process.exit(code);
}
