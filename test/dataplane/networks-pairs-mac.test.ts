// The MAC check with networks and address pairs on real iptables and ipset
// (DESIGN §2.10, §2.11, §6.5): the calculation core's rendering for one host,
// programmed by the driver's dataplane in a namespace, with real packets from
// workload namespaces behind veth "taps". Two endpoints hold 10.0.0.5 on two
// networks with two MACs: each passes with its own MAC, a wrong MAC is
// dropped; a VRRP pair's MAC passes for the pair's address only; a CIDR
// pair's range passes, an address outside it is dropped.
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CalcGraph, DEFAULT_CALC_CONFIG, type HostUpdate } from "../../services/calc/index.js";
import { networkHash, networkMacListSet } from "../../services/calc/names.js";
import { createLogger } from "../../services/runtime/logger.js";
import { createExecRunner } from "../../services/driver/kernel/command-runner.js";
import { createDataplane } from "../../services/driver/apply/dataplane.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { buildPlanInput, driverBaseChains } from "../../services/driver/plan/plan-input.js";
import { endpoint, profile } from "../support/model.js";
import { uniqueName } from "../support/binaries.js";

const logger = createLogger({ name: "test", level: "silent" });
const M1 = "02:00:00:00:00:01";
const M2 = "02:00:00:00:00:02";
const M3 = "02:00:00:00:00:03";
const VRRP = "00:00:5e:00:01:07";

describe("MAC check with networks and pairs, real packets", () => {
  const id = uniqueName("npm").slice(-8);
  const hv = `${id}-hv`;
  const dst = `${id}-d`;
  const w = (n: number) => `${id}-w${n}`;
  const sh = (ns: string, cmd: string) => execa("ip", ["netns", "exec", ns, "sh", "-c", cmd]);

  beforeAll(async () => {
    for (const ns of [hv, dst, w(1), w(2), w(3)]) await execa("ip", ["netns", "add", ns]);
    await sh(hv, "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
    await sh(dst, "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
    // The destination: 10.9.0.1, counting what arrives on udp/9999 by source.
    await execa("ip", ["link", "add", "dst0", "netns", hv, "type", "veth", "peer", "name", "eth0", "netns", dst]);
    await sh(hv, "ip addr add 10.9.0.254/24 dev dst0 && ip link set dst0 up");
    await sh(dst, "ip addr add 10.9.0.1/24 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via 10.9.0.254");
    // Workloads behind tapN; the host answers ARP for them (proxy ARP, at once: its
    // default random delay of up to 0.8 s would make a datagram wait past the check).
    for (const [n, mac, addrs] of [[1, M1, ["10.0.0.5", "10.0.0.100"]], [2, M2, ["10.0.0.5"]], [3, M3, ["10.0.0.6", "10.244.3.7", "10.245.0.1"]]] as const) {
      await execa("ip", ["link", "add", `tap${n}`, "netns", hv, "type", "veth", "peer", "name", "eth0", "netns", w(n)]);
      await sh(hv, `ip link set tap${n} up && sysctl -qw net.ipv4.conf.tap${n}.proxy_arp=1 net.ipv4.conf.tap${n}.rp_filter=0 net.ipv4.neigh.tap${n}.proxy_delay=0`);
      await sh(w(n), `ip link set eth0 address ${mac} && ip link set eth0 up && ${addrs.map((a) => `ip addr add ${a}/32 dev eth0`).join(" && ")} && ip route add 10.9.0.0/24 dev eth0`);
    }
  });
  afterAll(async () => {
    for (const ns of [hv, dst, w(1), w(2), w(3)]) await execa("ip", ["netns", "del", ns], { reject: false });
  });

  /** Sends one UDP datagram from `src` in workload n with source MAC `mac`; whether it reached the destination. */
  let sent = 0;
  const arrives = async (n: number, src: string, mac: string): Promise<boolean> => {
    await sh(w(n), `ip link set eth0 address ${mac}`);
    const port = 20000 + ++sent;
    await sh(dst, `iptables -A INPUT -p udp --dport 9999 --sport ${port} -s ${src}`);
    const py = `import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("${src}", ${port})); s.sendto(b"x", ("10.9.0.1", 9999))`;
    await execa("ip", ["netns", "exec", w(n), process.env.PYTHON ?? "python3", "-c", py]);
    await new Promise((r) => setTimeout(r, 300));
    const out = (await sh(dst, "iptables -nvxL INPUT")).stdout;
    const line = out.split("\n").find((l) => l.includes(`spt:${port}`))!;
    return Number(line.trim().split(/\s+/)[0]) > 0;
  };

  it("one address on two networks, a VRRP pair, a CIDR pair: exact MAC checks", async () => {
    let pending: HostUpdate[] = [];
    const g = new CalcGraph({ onHostUpdates: (_h, _r, u) => { pending.push(...u); } }, DEFAULT_CALC_CONFIG);
    g.upsertProfile(profile({ id: "any", tags: ["any"], inbound_rules: [{}], outbound_rules: [{}] }));
    const ep = (n: number, extra: Record<string, unknown>) =>
      endpoint({ host: "hv1", workload: `w${n}`, id: "e", name: `tap${n}`, profile_ids: ["any"], ...extra });
    g.upsertEndpoint(ep(1, { mac: M1, network: "net-a", ipv4_nets: ["10.0.0.5"], address_pairs: [{ ip_address: "10.0.0.100", mac_address: VRRP }] }));
    g.upsertEndpoint(ep(2, { mac: M2, network: "net-b", ipv4_nets: ["10.0.0.5"] }));
    g.upsertEndpoint(ep(3, { mac: M3, ipv4_nets: ["10.0.0.6"], address_pairs: [{ ip_address: "10.244.0.0/16" }] }));
    g.flush(1);
    const state = new DesiredState();
    state.apply(g.snapshot("hv1").updates);
    pending = [];
    const runner = createExecRunner({ netns: hv });
    const dp = createDataplane({ runner, backend: "nft", families: [4], logger });
    const apply = () => dp.apply(buildPlanInput({ base: driverBaseChains(["tap"], [4]), families: [4], desired: state }), state.takeChanges());
    await apply();

    const seen: Record<string, boolean> = {};
    for (const [what, n, src, mac] of [
      ["w1 10.0.0.5 own MAC", 1, "10.0.0.5", M1],
      ["w2 10.0.0.5 own MAC", 2, "10.0.0.5", M2],
      ["w1 10.0.0.5 with w2's MAC", 1, "10.0.0.5", M2],
      ["w2 10.0.0.5 with w1's MAC", 2, "10.0.0.5", M1],
      ["w1 VRRP address with VRRP MAC", 1, "10.0.0.100", VRRP],
      ["w1 VRRP address with own MAC", 1, "10.0.0.100", M1],
      ["w1 fixed address with VRRP MAC", 1, "10.0.0.5", VRRP],
      ["w3 in CIDR pair, own MAC", 3, "10.244.3.7", M3],
      ["w3 in CIDR pair, other MAC", 3, "10.244.3.7", M1],
      ["w3 outside CIDR pair", 3, "10.245.0.1", M3],
      ["w3 fixed address", 3, "10.0.0.6", M3],
    ] as const) seen[what] = await arrives(n, src, mac);
    expect(seen).toEqual({
      "w1 10.0.0.5 own MAC": true,
      "w2 10.0.0.5 own MAC": true,
      "w1 10.0.0.5 with w2's MAC": false,
      "w2 10.0.0.5 with w1's MAC": false,
      "w1 VRRP address with VRRP MAC": true,
      "w1 VRRP address with own MAC": false,
      "w1 fixed address with VRRP MAC": false,
      "w3 in CIDR pair, own MAC": true,
      "w3 in CIDR pair, other MAC": false,
      "w3 outside CIDR pair": false,
      "w3 fixed address": true,
    });

    // Network net-a and the leaf leave the host (incrementally, as a driver receives it): their sets and
    // chains go from the kernel (a list:set before its members), net-b's endpoint still passes.
    g.deleteEndpoint("hv1/openstack/w1/e");
    g.deleteEndpoint("hv1/openstack/w3/e");
    g.flush(2);
    state.apply(pending);
    await apply();
    const sets = (await runner.run("ipset", ["list", "-n"])).stdout.split("\n").filter(Boolean).sort();
    expect(sets.filter((n) => n.includes(networkHash("net-a")) || n.includes("tap3"))).toEqual([]);
    expect(sets).toContain(networkMacListSet("net-b"));
    expect(await arrives(2, "10.0.0.5", M2)).toBe(true);
    expect(await arrives(2, "10.0.0.5", M1)).toBe(false);
  }, 60_000);
});
