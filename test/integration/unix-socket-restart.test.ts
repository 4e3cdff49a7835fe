// A controller killed with SIGKILL leaves its Unix socket file behind; the
// restart must bind over that stale file — but never over a socket some
// live process still answers on, and never over something that is not a
// socket at all.
import { execa } from "execa";
import { lstatSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { call, createClients } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { parseDocuments } from "../../services/model/index.js";
import { startTestController } from "../support/controller.js";

const dir = mkdtempSync(join(tmpdir(), "palisade-sock-"));
const started: Awaited<ReturnType<typeof startTestController>>[] = [];

/** A socket file whose owner died without cleaning up, as after a SIGKILL. */
async function staleSocket(path: string): Promise<void> {
  const child = execa(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(path)},()=>console.log("ready"))`], { reject: false, stdin: "ignore" });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (c) => reject(new Error(`socket owner exited early (${c})`)));
  });
  child.kill("SIGKILL");
  await child;
}

/** One round trip to whatever listens on `path`. */
function ask(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path });
    let got = "";
    s.on("data", (d) => (got += d));
    s.on("end", () => resolve(got));
    s.on("error", reject);
  });
}

describe("controller on a unix: socket after a crash", () => {
  afterAll(async () => { for (const c of started) await c.stop().catch(() => undefined); });

  it("binds over a stale socket file left by a killed process", async () => {
    const path = join(dir, "stale.sock");
    await staleSocket(path);
    // The precondition the old code failed on: the file is still there, and a socket.
    expect(lstatSync(path).isSocket()).toBe(true);
    const c = await startTestController({ socket: path });
    started.push(c);
    // And it really serves on that path: this controller, with its store. A
    // write through the socket is read back over the controller's TCP
    // listener, stored at the revision the write answered. (The store's
    // current revision is not compared: other test files write to the same
    // etcd meanwhile — seen: 782 written, 784 current when read.)
    expect(lstatSync(path).isSocket()).toBe(true);
    const clients = createClients(`unix:${path}`);
    try {
      const before = Number((await call(clients.policy, clients.policy.getRevision, {})).revision);
      expect(Number((await c.policy(c.clients.policy.getRevision, {})).revision)).toBeGreaterThanOrEqual(before);
      const id = "written-over-the-socket";
      const applied = await call(clients.policy, clients.policy.apply, {
        deletes: [], documents: parseDocuments([{ kind: "Profile", id, tags: [], inbound_rules: [], outbound_rules: [] }]).map(documentToPb),
      });
      expect(Number(applied.revision)).toBeGreaterThan(before);
      const read = await c.policy(c.clients.policy.getProfile, { id });
      expect(read.profile?.id).toBe(id);
      expect(Number(read.profile?.revision)).toBe(Number(applied.revision));
    } finally {
      clients.close();
    }
  });

  it("never takes over a socket another process is listening on", async () => {
    const path = join(dir, "live.sock");
    // The controller's probe connects and hangs up at once: ignore the reset.
    const other = net.createServer((s) => { s.on("error", () => undefined); s.end("still mine\n"); });
    await new Promise<void>((r) => other.listen(path, r));
    try {
      await expect(startTestController({ socket: path })).rejects.toThrow(`another process is listening on unix:${path}`);
      expect(await ask(path)).toBe("still mine\n");
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it("refuses a path that is not a socket, and leaves the file alone", async () => {
    const path = join(dir, "regular.sock");
    writeFileSync(path, "not a socket\n");
    await expect(startTestController({ socket: path })).rejects.toThrow(/is not a socket/);
    expect(readFileSync(path, "utf8")).toBe("not a socket\n");
  });
});
