// What NFLOG tells of a bridged frame, read the way the driver reads it
// (DESIGN §6.12): tcpdump on nflog:GROUP in a hypervisor namespace with a
// Linux bridge and bridge-nf-call-iptables=1, its pcap parsed by
// PcapNflogReader. In and out device are the bridge; the taps come as the
// physdev indices, and pointInterfaces picks them — so a bridged frame's
// flow record names the workload's tap.
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FLOW_NFLOG_GROUP } from "../../services/contract/flow-report-format.js";
import { startFlowReader, type FlowReader } from "../../services/driver/flows/flow-reader.js";
import { pointInterfaces, type NflogPacket } from "../../services/driver/flows/nflog-pcap.js";
import { createLogger } from "../../services/runtime/logger.js";
import { createLab, type Lab } from "../lab/lab.js";
import { eventually, uniqueName } from "../support/binaries.js";

let lab: Lab;
let hv: string;
let reader: FlowReader | undefined;
let wrapper: string | undefined;
const packets: NflogPacket[] = [];

describe("NFLOG of a bridged frame", () => {
  beforeAll(async () => {
    lab = createLab(`${uniqueName("bn")}-`);
    hv = (await lab.addHypervisor("hv1")).ns;
    await lab.addBridge("hv1", "brnf", { bridgeNf: true });
    await lab.addBridgedWorkload("hv1", { name: "a", iface: "tapna", bridge: "brnf", host: 10 });
    await lab.addBridgedWorkload("hv1", { name: "b", iface: "tapnb", bridge: "brnf", host: 11 });
    await lab.exec(hv, "iptables", ["-w", "-A", "FORWARD", "-m", "physdev", "--physdev-is-bridged", "-p", "icmp", "-j", "NFLOG", "--nflog-group", String(FLOW_NFLOG_GROUP), "--nflog-prefix", "pal:D:pal-pi-x:1"]);
    // The reader as the driver runs it, inside the hypervisor's namespace.
    wrapper = join(tmpdir(), `${lab.prefix}tcpdump.sh`);
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${hv} tcpdump "$@"\n`);
    chmodSync(wrapper, 0o755);
    reader = startFlowReader({ group: FLOW_NFLOG_GROUP, logger: createLogger({ name: "t", level: "silent" }), tcpdump: wrapper, onPacket: (p) => packets.push(p) });
    expect(await reader.listening(10_000)).toBe(true);
  }, 60_000);
  afterAll(async () => {
    await reader?.stop();
    await lab?.destroy();
    if (wrapper) rmSync(wrapper, { force: true });
  });

  it("in/out are the bridge; the physdev indices are the taps, and a point is judged on them", async () => {
    const idx = async (n: string) => Number((await lab.exec(hv, "cat", [`/sys/class/net/${n}/ifindex`])).trim());
    await lab.exec(lab.workloads.get("a")!.ns, "ping", ["-c1", "-W2", "10.77.0.11"]);
    const p = await eventually(async () => {
      const x = packets.find((q) => q.prefix === "pal:D:pal-pi-x:1");
      if (!x) throw new Error("no NFLOG packet yet");
      return x;
    }, { timeoutMs: 5_000, what: "the NFLOG packet" });
    const [br, ta, tb] = [await idx("brnf"), await idx("tapna"), await idx("tapnb")];
    expect(p).toMatchObject({ indev: br, outdev: br, physindev: ta, physoutdev: tb });
    expect(pointInterfaces(p)).toEqual({ indev: ta, outdev: tb });
  });
});
