// Keeps DESIGN §6.5 honest: the chains and sets of an empty host, of a
// one-endpoint host and of a host with networks and pairs, as the calculation core renders them, must be exactly
// the listings in docs/DESIGN.md (fenced blocks marked `listing:<name>`). A
// rendering change without a doc change fails here; the message prints the
// listing the code renders now.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CalcGraph, type HostUpdate } from "../../services/calc/index.js";
import { endpoint, profile } from "../support/model.js";

const DESIGN = new URL("../../docs/DESIGN.md", import.meta.url);

/** The fenced block ```text listing:<name> … ``` of docs/DESIGN.md. */
function docListing(name: string): string | undefined {
  const doc = readFileSync(DESIGN, "utf8");
  const m = new RegExp("^```text listing:" + name + "\\n([\\s\\S]*?)^```$", "m").exec(doc);
  return m?.[1];
}

/** A host's snapshot as a listing: per family its sets (with members) and chains (with rules), in snapshot order. */
function listing(updates: HostUpdate[]): string {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    out.push(`IPv${family}:`);
    for (const u of updates) {
      if (u.type === "ipset-update" && u.family === family) out.push(`  ipset ${u.name}${u.members.length ? `: ${[...u.members].sort().join(" ")}` : ""}`);
    }
    for (const u of updates) {
      if (u.type !== "chain-update" || u.chain.family !== family) continue;
      out.push(`  ${u.chain.name}:${u.chain.rules.length ? "" : " (empty)"}`);
      for (const r of u.chain.rules) out.push(`    ${r}`);
    }
  }
  return `${out.join("\n")}\n`;
}

function render(withEndpoint: boolean | "networks"): string {
  const g = new CalcGraph({ onHostUpdates: () => undefined });
  if (withEndpoint === "networks") {
    // Two tenants' endpoints at one address on two networks, one with a VRRP pair, one with a CIDR pair (DESIGN §2.10, §2.11).
    g.upsertProfile(profile({ id: "web", tags: ["web"], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] }));
    g.upsertEndpoint(endpoint({
      host: "hv1", workload: "vm1", id: "port1", name: "tap0", mac: "02:00:00:00:00:0a", network: "tenant-a",
      ipv4_nets: ["10.0.0.5"], profile_ids: ["web"], address_pairs: [{ ip_address: "10.0.0.100", mac_address: "00:00:5e:00:01:07" }],
    }));
    g.upsertEndpoint(endpoint({
      host: "hv1", workload: "vm2", id: "port2", name: "tap1", mac: "02:00:00:00:00:0b", network: "tenant-b",
      ipv4_nets: ["10.0.0.5"], profile_ids: ["web"], address_pairs: [{ ip_address: "10.244.0.0/16" }],
    }));
  } else if (withEndpoint) {
    g.upsertProfile(profile({ id: "web", tags: ["web"], inbound_rules: [{ protocol: "tcp", dst_ports: [80] }], outbound_rules: [{}] }));
    g.upsertEndpoint(endpoint({
      host: "hv1", workload: "vm1", id: "port1", name: "tap0", mac: "02:00:00:00:00:0a",
      ipv4_nets: ["198.51.100.10"], ipv6_nets: ["2001:db8::a"], profile_ids: ["web"],
    }));
  }
  g.flush(1);
  return listing(g.snapshot("hv1").updates);
}

describe("DESIGN §6.5 listings match the rendering", () => {
  for (const [name, withEndpoint] of [["empty-host", false], ["one-endpoint-host", true], ["networks-pairs-host", "networks"]] as const) {
    it(`${name}`, () => {
      const rendered = render(withEndpoint);
      const doc = docListing(name);
      expect(doc, `docs/DESIGN.md has no \`\`\`text listing:${name} block; the code renders:\n${rendered}`).toBeDefined();
      expect(doc, `docs/DESIGN.md §6.5 listing:${name} differs from the rendering; the code renders:\n${rendered}`).toBe(rendered);
    });
  }
});
