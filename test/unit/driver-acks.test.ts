// What the driver acknowledges, and for which revision. Against an in-memory
// kernel and an in-process fake controller stream on loopback.
import { afterEach, describe, expect, it } from "vitest";
import { type ChainDef, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startDriver, type Driver } from "../../services/driver/driver.js";
import { startFakeController, type FakeController } from "../support/fake-controller.js";
import { FakeKernel } from "../support/fake-kernel.js";

const logger = createLogger({ name: "test", level: "silent" });
const chain = (name: string, rules: string[]): ChainDef => ({ table: "filter", family: 4, name, rules });
const SNAPSHOT: HostUpdate[] = [
  ...["pal-from-wl-dispatch", "pal-to-wl-dispatch", "pal-wl-to-host"].map((n) => ({ type: "chain-update" as const, chain: chain(n, ["-j DROP"]) })),
  { type: "chain-update", chain: chain("pal-pi-web", ["-p tcp --dport 80 -j ACCEPT"]) },
];

async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("driver acknowledgements", () => {
  let driver: Driver | undefined;
  let ctl: FakeController | undefined;
  afterEach(async () => {
    await driver?.stop();
    ctl?.stop();
  });

  // CI saw this after a driver restart: the snapshot arrived while the
  // pre-sync apply (fail-closed placeholders) was still running; that apply
  // answered with revision 0 and used up the snapshot's answer, so the
  // controller showed the host "in sync at 0" for good.
  it("a snapshot arriving during the pre-sync apply is acknowledged with its own revision", async () => {
    const k = new FakeKernel();
    let release!: () => void;
    k.gate = new Promise<void>((r) => (release = r));
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], readInterface: async () => "up", rulesetMonitor: false });
    const restores = () => k.log.filter((l) => l.startsWith("iptables-nft-restore")).length;
    await until(() => ctl!.connected() && restores() > 0, "connected, pre-sync restore held");
    ctl.send(7, SNAPSHOT, true, { acksForContentOnly: true });
    await new Promise((r) => setTimeout(r, 50)); // the snapshot is in before the held apply ends
    k.gate = undefined;
    release();
    await driver.firstSync;
    await until(() => ctl!.acks().includes(7), "revision 7 acknowledged");
    expect(ctl.acks()).not.toContain(0);
    expect(driver.appliedRevision).toBe(7);
    expect(k.chain(4, "pal-pi-web")!.join("\n")).toContain("--dport 80 -j ACCEPT");
  });

  it("with acks_for_content_only, a delta without updates is not answered; one with updates is", async () => {
    const k = new FakeKernel();
    ctl = await startFakeController();
    driver = await startDriver({ controllers: [ctl.address], hostname: "hv1", runner: k, logger, backend: "nft", families: [4], readInterface: async () => "up", rulesetMonitor: false });
    await until(() => ctl!.connected(), "connected");
    ctl.send(3, SNAPSHOT, true, { acksForContentOnly: true });
    await until(() => ctl!.acks().includes(3), "snapshot acknowledged");
    ctl.send(4, []);
    ctl.send(5, [{ type: "chain-update", chain: chain("pal-pi-web", ["-p tcp --dport 81 -j ACCEPT"]) }]);
    await until(() => ctl!.acks().includes(5), "revision 5 acknowledged");
    expect(ctl.acks()).toEqual([3, 5]);
    expect(k.chain(4, "pal-pi-web")!.join("\n")).toContain("--dport 81 -j ACCEPT");
  });
});
