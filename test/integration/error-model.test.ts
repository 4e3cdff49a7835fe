// One error model across the wire (DESIGN §3.7): what the server refuses
// reaches the client as one typed error, rebuilt from the status's structured
// detail — validation issues by document and field, the reason, and whether
// the controller answered at all.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, createClients } from "../../services/contract/clients.js";
import { MAX_VIOLATIONS, RpcError } from "../../services/contract/errors.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { ValidationError, parseDocuments } from "../../services/model/index.js";
import { freePort } from "../lab/etcd-process.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;

async function refused(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(RpcError);
  return e as RpcError;
}

/** Valid documents, then broken on the wire (the CLI would have refused them locally). */
function brokenProfiles(n: number) {
  return parseDocuments(Array.from({ length: n }, (_, i) => ({ kind: "Profile", id: `p${i}`, inbound_rules: [{ protocol: "tcp", dst_ports: [80] }] })))
    .map(documentToPb)
    .map((d, i) => {
      if (d.kind?.$case === "profile") {
        d.kind.value.id = `bad id ${i}`;
        d.kind.value.inboundRules[0]!.match!.dstPorts = [{ first: 70000, last: 70000 }];
      }
      return d;
    });
}

describe("error model", () => {
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  it("validation issues come back field by field, as the server's own ValidationError", async () => {
    const e = await refused(call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: brokenProfiles(2) }));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.fromServer).toBe(true);
    expect(e.reason).toBe("validation");
    expect(e.issues.length).toBeGreaterThanOrEqual(4);
    expect(e.issues).toContainEqual(expect.objectContaining({ document: "Profile bad id 0", field: "id" }));
    expect(e.issues).toContainEqual({ document: "Profile bad id 1", field: "inbound_rules[0].dst_ports[0]", reason: "ports must be 0-65535" });
    const v = e.validation();
    expect(v).toBeInstanceOf(ValidationError);
    expect(v!.issues).toEqual(e.issues);
    // The one line is the same issues, formatted.
    expect(e.message).toBe(v!.message);
  });

  it("stays bounded: at most MAX_VIOLATIONS issues, the rest counted", async () => {
    const e = await refused(call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: brokenProfiles(150) }));
    expect(e.issues.length).toBe(MAX_VIOLATIONS);
    expect(e.omittedIssues).toBeGreaterThan(0);
    expect(e.issues.length + e.omittedIssues).toBeGreaterThanOrEqual(300);
  });

  it("other refusals carry their code and one line, no issues; a missing object is NOT_FOUND", async () => {
    const e = await refused(call(t.clients.policy, t.clients.policy.getProfile, { id: "nope" }));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    expect(e.fromServer).toBe(true);
    expect(e.issues).toEqual([]);
    expect(e.validation()).toBeUndefined();
    expect(e.message).toMatch(/profile nope not found/);
  });

  it("a controller that cannot be reached is not mistaken for one that answered", async () => {
    const c = createClients(`127.0.0.1:${await freePort()}`);
    try {
      const e = await refused(call(c.policy, c.policy.getRevision, {}, 3_000));
      expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(e.code);
      expect(e.fromServer).toBe(false);
      expect(e.message).toMatch(/cannot reach the controller at (dns:)?127\.0\.0\.1:/);
    } finally {
      c.close();
    }
  });
});
