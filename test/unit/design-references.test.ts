// Every `DESIGN §N` / `DESIGN §N.M` citation in services/, proto/, test/ and
// deploy/ points at a section heading of docs/DESIGN.md (DESIGN §8.7).
// Headings are `## §N Title` and `### §N.M Title`. Every repository path the
// operator and design documents name exists.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SCANNED = ["services", "proto", "test", "deploy"];
/** Directory paths (relative to the root) that are not ours to cite from. */
const SKIPPED_DIRS = new Set(["node_modules", "dist", join("services", "gen")]);

const SECTION = String.raw`§(\d+(?:\.\d+)?)`;
/** "DESIGN §5", "DESIGN §5.7", and lists: "DESIGN §5/§6", "DESIGN §2, §3", "DESIGN §2.1–§2.7". */
const CITATION_RE = new RegExp(String.raw`DESIGN\s+${SECTION}(?:\s*(?:,|/|&|and|–|-)\s*${SECTION})*`, "g");
const ONE_SECTION_RE = new RegExp(SECTION, "g");
const HEADING_RE = /^(#{2,3}) §(\d+(?:\.\d+)?) \S/;

export interface Citation {
  file: string;
  line: number;
  section: string;
}

/** The section numbers docs/DESIGN.md defines, with problems in its own headings. */
export function parseHeadings(markdown: string): { sections: Set<string>; problems: string[] } {
  const sections = new Set<string>();
  const problems: string[] = [];
  let inFence = false;
  markdown.split("\n").forEach((text, i) => {
    if (text.startsWith("```")) inFence = !inFence;
    if (inFence) return;
    const m = HEADING_RE.exec(text);
    if (!m) return;
    const [, hashes, section] = m as unknown as [string, string, string];
    const depth = section.split(".").length;
    if (hashes.length !== depth + 1) problems.push(`line ${i + 1}: §${section} should be a level-${depth + 1} heading`);
    if (sections.has(section)) problems.push(`line ${i + 1}: §${section} appears twice`);
    if (depth === 2 && !sections.has(section.split(".")[0]!)) problems.push(`line ${i + 1}: §${section} comes before its section`);
    sections.add(section);
  });
  return { sections, problems };
}

/** Every section a text cites, with its 1-based line. */
export function findCitations(file: string, text: string): Citation[] {
  const out: Citation[] = [];
  text.split("\n").forEach((line, i) => {
    for (const m of line.matchAll(CITATION_RE)) {
      for (const s of m[0].matchAll(ONE_SECTION_RE)) out.push({ file, line: i + 1, section: s[1]! });
    }
  });
  return out;
}

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const rel = relative(ROOT, path);
    const st = statSync(path);
    if (st.isDirectory()) {
      if (!SKIPPED_DIRS.has(name) && !SKIPPED_DIRS.has(rel)) yield* walk(path);
    } else if (st.isFile() && st.size < 4 * 1024 * 1024) {
      yield path;
    }
  }
}

function scanRepository(): Citation[] {
  const out: Citation[] = [];
  for (const top of SCANNED) {
    for (const path of walk(join(ROOT, top))) {
      const text = readFileSync(path, "utf8");
      if (text.includes("\u0000")) continue; // binary
      out.push(...findCitations(relative(ROOT, path), text));
    }
  }
  return out;
}

/** Repository paths a document names (`services/driver/plan/plan.ts`, `test/run.sh`, …). */
const PATH_RE = /\b(?:services|test|deploy|proto|docs)\/[A-Za-z0-9_./-]+\.(?:ts|py|sh|md|proto|ya?ml|json)\b/g;

/** Paths a document names that do not exist in the repository, as readable lines. */
export function missingPaths(file: string, text: string, exists: (path: string) => boolean): string[] {
  const out: string[] = [];
  text.split("\n").forEach((line, i) => {
    for (const m of line.matchAll(PATH_RE)) if (!exists(m[0])) out.push(`${file}:${i + 1}: ${m[0]} does not exist`);
  });
  return out;
}

function unresolved(citations: Citation[], sections: Set<string>): string[] {
  return citations.filter((c) => !sections.has(c.section)).map((c) => `${c.file}:${c.line}: DESIGN §${c.section} has no heading in docs/DESIGN.md`);
}

describe("DESIGN § references", () => {
  const doc = parseHeadings(readFileSync(join(ROOT, "docs", "DESIGN.md"), "utf8"));

  it("docs/DESIGN.md numbers its sections consistently", () => {
    expect(doc.sections.size).toBeGreaterThan(10);
    expect(doc.problems).toEqual([]);
  });

  it("every citation in services/, proto/, test/ and deploy/ names a section that exists", () => {
    const citations = scanRepository();
    // The scan sees the code base (a broken walk would pass vacuously).
    expect(citations.length).toBeGreaterThan(10);
    expect(unresolved(citations, doc.sections)).toEqual([]);
  });

  it("the check can fail: a citation of a missing section is reported with file and line", () => {
    // Spelt through D so that this file itself cites no missing section.
    const D = "DESIGN";
    const text = ["// fine: DESIGN §5.7", `// broken: ${D} §99.1 and ${D} §5/§98`].join("\n");
    const citations = findCitations("x.ts", text);
    expect(citations.map((c) => c.section)).toEqual(["5.7", "99.1", "5", "98"]);
    expect(unresolved(citations, doc.sections)).toEqual([
      `x.ts:2: ${D} §99.1 has no heading in docs/DESIGN.md`,
      `x.ts:2: ${D} §98 has no heading in docs/DESIGN.md`,
    ]);
  });

  it("every repository path that DESIGN.md, README.md and CONFIGURATION.md name exists (files move; prose must follow)", () => {
    const exists = (p: string) => existsSync(join(ROOT, p));
    const docs = ["docs/DESIGN.md", "README.md", "deploy/CONFIGURATION.md"];
    const named = docs.flatMap((d) => [...readFileSync(join(ROOT, d), "utf8").matchAll(PATH_RE)]);
    expect(named.length).toBeGreaterThan(50);
    expect(docs.flatMap((d) => missingPaths(d, readFileSync(join(ROOT, d), "utf8"), exists))).toEqual([]);
  });

  it("the path check can fail: a path that does not exist is reported with file and line", () => {
    const text = ["see `services/calc/calc-graph.ts`", "and services/driver/no-such-file.ts."].join("\n");
    expect(missingPaths("x.md", text, (p) => existsSync(join(ROOT, p)))).toEqual(["x.md:2: services/driver/no-such-file.ts does not exist"]);
  });

  it("headings are parsed by level, outside code fences only", () => {
    const parsed = parseHeadings(["## §1 One", "### §1.1 Sub", "```", "## §7 In a fence", "```", "### §2.1 Orphan", "## §3.1 Wrong level"].join("\n"));
    expect([...parsed.sections]).toEqual(["1", "1.1", "2.1", "3.1"]);
    expect(parsed.problems).toEqual([
      "line 6: §2.1 comes before its section",
      "line 7: §3.1 should be a level-3 heading",
      "line 7: §3.1 comes before its section",
    ]);
  });
});
