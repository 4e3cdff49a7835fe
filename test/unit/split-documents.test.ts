// splitDocuments: one document, a list, a YAML multi-document stream, or JSON (DESIGN §3.1).
import { describe, expect, it } from "vitest";
import { splitDocuments } from "../../services/model/document.js";
import { ValidationError } from "../../services/model/errors.js";

function thrown(f: () => unknown): ValidationError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return e as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

describe("splitDocuments", () => {
  it("reads a single YAML document", () => {
    expect(splitDocuments("kind: Profile\nid: db\ntags: [db]\n")).toEqual([{ kind: "Profile", id: "db", tags: ["db"] }]);
  });

  it("reads a YAML list of documents", () => {
    const text = "- kind: Profile\n  id: a\n- kind: Profile\n  id: b\n";
    expect(splitDocuments(text)).toEqual([{ kind: "Profile", id: "a" }, { kind: "Profile", id: "b" }]);
  });

  it("reads a multi-document stream separated by ---, keeping order", () => {
    const text = [
      "kind: Profile", "id: db", "---", "kind: Endpoint", "host: hv1", "---", "kind: Profile", "id: app", "",
    ].join("\n");
    expect(splitDocuments(text)).toEqual([
      { kind: "Profile", id: "db" },
      { kind: "Endpoint", host: "hv1" },
      { kind: "Profile", id: "app" },
    ]);
  });

  it("flattens a list inside a multi-document stream", () => {
    const text = "kind: Profile\nid: a\n---\n- kind: Profile\n  id: b\n- kind: Profile\n  id: c\n";
    expect(splitDocuments(text).map((d) => (d as { id: string }).id)).toEqual(["a", "b", "c"]);
  });

  it("skips empty documents and comment-only documents", () => {
    expect(splitDocuments("")).toEqual([]);
    expect(splitDocuments("---\n---\n")).toEqual([]);
    expect(splitDocuments("# only a comment\n")).toEqual([]);
    const text = "---\n# nothing here\n---\nkind: Profile\nid: a\n---\n---\nkind: Profile\nid: b\n---\n";
    expect(splitDocuments(text)).toEqual([{ kind: "Profile", id: "a" }, { kind: "Profile", id: "b" }]);
  });

  it("reads JSON: an object and an array", () => {
    expect(splitDocuments('{"kind": "Profile", "id": "db", "inbound_rules": [{"!src_net": "10.0.0.0/8"}]}')).toEqual([
      { kind: "Profile", id: "db", inbound_rules: [{ "!src_net": "10.0.0.0/8" }] },
    ]);
    expect(splitDocuments('[{"kind": "Profile", "id": "a"}, {"kind": "Profile", "id": "b"}]')).toHaveLength(2);
  });

  it("unwraps a {kind: List, items: [...]} wrapper", () => {
    const text = JSON.stringify({ kind: "List", items: [{ kind: "Profile", id: "a" }, { kind: "Profile", id: "b" }] });
    expect(splitDocuments(text)).toEqual([{ kind: "Profile", id: "a" }, { kind: "Profile", id: "b" }]);
  });

  it("does not unwrap an object that merely has an items field among others", () => {
    const doc = { kind: "Profile", id: "a", items: [1] };
    expect(splitDocuments(JSON.stringify(doc))).toEqual([doc]);
  });

  it("keeps quoted negated keys and port range strings verbatim", () => {
    const text = 'kind: Profile\nid: db\ninbound_rules:\n  - {"!src_net": 10.0.0.0/8, protocol: tcp, dst_ports: [80, "8000:8080"]}\n';
    expect(splitDocuments(text)).toEqual([
      { kind: "Profile", id: "db", inbound_rules: [{ "!src_net": "10.0.0.0/8", protocol: "tcp", dst_ports: [80, "8000:8080"] }] },
    ]);
  });

  it("refuses invalid YAML with a ValidationError naming the source", () => {
    const e = thrown(() => splitDocuments("kind: Profile\nid: [unclosed\n", "policy.yaml"));
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]!.document).toBe("policy.yaml");
    expect(e.issues[0]!.reason).toMatch(/^not valid YAML or JSON: /);
    // one line only: the reason is meant for a one-line error message
    expect(e.issues[0]!.reason).not.toContain("\n");
    expect(e.message).toMatch(/^policy\.yaml: not valid YAML or JSON/);
  });

  it("refuses invalid YAML in a later document of a stream", () => {
    const e = thrown(() => splitDocuments("kind: Profile\nid: a\n---\nkind: [\n"));
    expect(e.issues[0]!.document).toBe("input");
  });

  it("refuses duplicate keys in one mapping", () => {
    const e = thrown(() => splitDocuments("kind: Profile\nid: a\nid: b\n"));
    expect(e.issues[0]!.reason).toMatch(/not valid YAML or JSON/);
  });

  it("refuses more than 5000 documents", () => {
    const text = JSON.stringify(Array.from({ length: 5001 }, (_, i) => ({ kind: "Profile", id: `p${i}` })));
    const e = thrown(() => splitDocuments(text));
    expect(e.issues[0]!.reason).toMatch(/more than 5000 documents/);
    expect(splitDocuments(JSON.stringify(Array.from({ length: 5000 }, () => ({}))))).toHaveLength(5000);
  });
});
