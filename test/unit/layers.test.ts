// The layers of services/ (DESIGN §8.1), enforced from the import
// statements themselves: any edge outside the intended graph fails, naming
// the file and the import.
//
//   util ← model ← calc ← controller
//   contract (the only door to services/gen, besides the controller's gRPC
//   adapters) is used by controller, driver, CLIs and the adapter;
//   runtime (process plumbing: TLS, gRPC server, metrics, CLI environment).
//   Nothing imports a binary's main.ts.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, normalize, relative, dirname } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");

/** Folder -> folders it may import (itself always allowed). */
export const ALLOWED: Record<string, readonly string[]> = {
  util: [],
  model: ["util"],
  contract: ["model", "util", "gen"],
  calc: ["model", "util", "contract"],
  runtime: ["util", "model", "contract"],
  controller: ["util", "model", "calc", "contract", "runtime", "gen"],
  driver: ["util", "model", "contract", "runtime"],
  cli: ["util", "model", "contract", "runtime"],
  openstack: ["util", "model", "contract", "runtime"],
};

/** Folders that must not reach these, even through others. */
export const NEVER_REACHES: Record<string, readonly string[]> = {
  model: ["gen", "controller", "calc"],
  calc: ["gen", "controller"],
  driver: ["controller", "calc"],
  cli: ["controller", "calc"],
  openstack: ["controller", "calc"],
};

type Graph = Map<string, { spec: string; target: string }[]>;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === "gen" ? [] : tsFiles(p);
    return n.endsWith(".ts") ? [p] : [];
  });
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

export function importGraph(): Graph {
  const g: Graph = new Map();
  for (const file of tsFiles(join(ROOT, "services"))) {
    const from = relative(ROOT, file);
    const src = readFileSync(file, "utf8");
    const edges: { spec: string; target: string }[] = [];
    for (const m of src.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith(".")) continue;
      edges.push({ spec, target: normalize(join(dirname(from), spec)).replace(/\.js$/, ".ts") });
    }
    g.set(from, edges);
  }
  return g;
}

const folderOf = (path: string) => path.split("/")[1]!;

/** Every forbidden edge and every forbidden reach, as readable lines. */
export function violations(g: Graph): string[] {
  const out: string[] = [];
  for (const [from, edges] of g) {
    const f = folderOf(from);
    const allowed = ALLOWED[f];
    for (const e of edges) {
      if (!e.target.startsWith("services/")) { out.push(`${from}: imports ${e.spec} outside services/`); continue; }
      const t = folderOf(e.target);
      if (e.target.endsWith("/main.ts")) out.push(`${from}: imports a binary's entry point ${e.spec}`);
      if (t === f) continue;
      if (!allowed) out.push(`${from}: folder services/${f} has no layer rule`);
      else if (!allowed.includes(t)) out.push(`${from}: services/${f} may not import services/${t} (${e.spec})`);
    }
  }
  // Reachability through any chain of imports.
  for (const [f, banned] of Object.entries(NEVER_REACHES)) {
    const seen = new Set<string>();
    const stack = [...g.keys()].filter((k) => folderOf(k) === f).map((k) => ({ file: k, via: [k] }));
    while (stack.length) {
      const { file, via } = stack.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      for (const e of g.get(file) ?? []) {
        const t = folderOf(e.target);
        if (banned.includes(t)) out.push(`services/${f} reaches services/${t}: ${[...via, e.target].join(" -> ")}`);
        else if (g.has(e.target)) stack.push({ file: e.target, via: [...via, e.target] });
      }
    }
  }
  return out;
}

describe("layers", () => {
  it("every import in services/ follows the intended graph", () => {
    const g = importGraph();
    expect(g.size).toBeGreaterThan(50);
    expect(violations(g)).toEqual([]);
  });

  it("every folder of services/ has a rule", () => {
    const folders = new Set([...importGraph().keys()].map(folderOf));
    for (const f of folders) expect(ALLOWED, `services/${f}`).toHaveProperty(f);
  });

  it("catches a forbidden edge, a reach through another folder, and an import of a binary", () => {
    const g: Graph = new Map([
      ["services/driver/x.ts", [{ spec: "../controller/etcd-store.js", target: "services/controller/etcd-store.ts" }]],
      ["services/cli/y.ts", [{ spec: "../contract/z.js", target: "services/contract/z.ts" }, { spec: "../driver/main.js", target: "services/driver/main.ts" }]],
      ["services/contract/z.ts", [{ spec: "../calc/index.js", target: "services/calc/index.ts" }]],
      ["services/calc/index.ts", []],
    ]);
    const v = violations(g);
    expect(v).toContain("services/driver/x.ts: services/driver may not import services/controller (../controller/etcd-store.js)");
    expect(v).toContain("services/cli/y.ts: imports a binary's entry point ../driver/main.js");
    expect(v.some((l) => l.startsWith("services/cli reaches services/calc: services/cli/y.ts -> services/contract/z.ts -> services/calc/index.ts"))).toBe(true);
  });
});
