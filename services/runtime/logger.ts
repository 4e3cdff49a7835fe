import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stderr (stdout stays for command output).
 * PALISADE_LOG_PRETTY=1 pretty-prints for humans.
 */
export function createLogger(opts: { name: string; level?: string }): Logger {
  const level = (opts.level ?? process.env.PALISADE_LOG_LEVEL ?? "info") as LevelWithSilent;
  if (process.env.PALISADE_LOG_PRETTY === "1") {
    return pino({ name: opts.name, level, transport: { target: "pino-pretty", options: { destination: 2 } } });
  }
  return pino({ name: opts.name, level }, pino.destination(2));
}
