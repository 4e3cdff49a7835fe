// The operator's HA playground (deploy/ha/local-ha.sh) keeps working: its
// --check mode brings up three etcd members, two controllers and two drivers,
// fails a controller and an etcd member over, and cleans up after itself.
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../../services/runtime/package-root.js";

describe("deploy/ha/local-ha.sh --check", () => {
  it("converges through failovers and leaves nothing behind", async () => {
    const r = await execa("bash", ["deploy/ha/local-ha.sh", "--check"], { cwd: packageRoot(), reject: false, stdin: "ignore", timeout: 150_000, all: true, env: { PALISADE_HA_SKIP_BUILD: "1" } });
    const lines = String(r.all).split("\n");
    const why = [...lines.filter((l) => /FAILED|timed out|local-ha:/.test(l)), ...lines.slice(-10)].join("\n");
    expect(r.exitCode, why).toBe(0);
    expect(String(r.stdout)).toMatch(/^OK$/m);
    const ns = await execa("ip", ["netns", "list"]);
    expect(String(ns.stdout)).not.toContain("pal-ha-");
  }, 180_000);
});
