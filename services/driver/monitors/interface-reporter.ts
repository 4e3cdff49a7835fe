// Interface status reports (DESIGN §5.2): the state of every local
// endpoint's interface, sent when it changes, all of them after a new
// snapshot; polled, and re-checked right after endpoint updates.
import { InterfaceState, type SyncRequest } from "../../contract/sync.js";
import { interfaceStatus, type InterfaceReader, type InterfaceStatus } from "./interface-monitor.js";

const STATE = { up: InterfaceState.INTERFACE_STATE_UP, down: InterfaceState.INTERFACE_STATE_DOWN, error: InterfaceState.INTERFACE_STATE_ERROR };

export interface InterfaceReporter {
  /** Reports what changed (all: every endpoint). */
  check(all: boolean): Promise<void>;
  stop(): void;
}

export function createInterfaceReporter(o: {
  prefixes: readonly string[];
  read: InterfaceReader;
  /** Why a bridge port's traffic is not enforced (reported as an error, DESIGN §6.3), or undefined. */
  bridgeProblem?: (name: string) => Promise<string | undefined>;
  /** Endpoint key -> interface name; undefined before the first snapshot. */
  endpoints(): ReadonlyMap<string, string> | undefined;
  send(req: SyncRequest): void;
  pollMs: number;
}): InterfaceReporter {
  const last = new Map<string, InterfaceStatus>();
  async function check(all: boolean): Promise<void> {
    const endpoints = o.endpoints();
    if (!endpoints) return;
    for (const [key, name] of endpoints) {
      const s = await interfaceStatus(name, o.prefixes, o.read, o.bridgeProblem);
      const prev = last.get(key);
      if (all || !prev || prev.state !== s.state || prev.detail !== s.detail) {
        last.set(key, s);
        o.send({ message: { $case: "endpointStatus", value: { endpointKey: key, state: STATE[s.state], detail: s.detail } } });
      }
    }
    for (const key of [...last.keys()]) if (!endpoints.has(key)) last.delete(key);
  }
  const timer = setInterval(() => void check(false), o.pollMs);
  return { check, stop: () => clearInterval(timer) };
}
