// PolicyService: the write/read API of the model. Validation happens here,
// at the edge, before anything touches etcd; one invalid document rejects
// the whole batch.
import type { Logger } from "pino";
import { ApiError } from "../contract/errors.js";
import { unary } from "../runtime/grpc-server.js";
import { documentFromPb, endpointKeyFromPb, endpointToPb, profileToPb, refFromPb } from "../contract/model-wire.js";
import type { PolicyServiceServer } from "../gen/palisade/policy/v1/policy.js";
import {
  AmbiguousAddressError, ID_RE, LIMITS, PROTOCOL_NUMBERS, ValidationError, createEvaluator, endpointKeyString, idProblem, objectKey, parseAddress,
  type EndpointKey, type ModelObject, type ModelView,
} from "../model/index.js";
import { Verdict, type ObjectRef as ObjectRefPb } from "../gen/palisade/policy/v1/policy.js";
import type { Deletion, EtcdStore, ObjectRef } from "./etcd-store.js";

function checkRefId(field: string, v: string): void {
  if (!ID_RE.test(v) || v.length > LIMITS.hostLength || v === "." || v === "..") {
    throw new ValidationError([{ document: "request", field, reason: "must be 1-253 characters of letters, digits, '_', '.' and '-'" }]);
  }
}

function checkKey(k: EndpointKey): void {
  for (const f of ["host", "orchestrator", "workload", "id"] as const) checkRefId(`endpoint.${f}`, k[f]);
}

/** A reference from a request, checked before it can become an etcd key. */
function checkedRef(o: ObjectRefPb | undefined, document: string, field: string): ObjectRef {
  const r = o ? refFromPb(o) : undefined;
  if (!r) throw new ValidationError([{ document, field, reason: "must name a profile or an endpoint" }]);
  if (r.kind === "Profile") checkRefId("profile_id", r.id);
  else checkKey(r.key);
  return r;
}

export function createPolicyService(opts: {
  store: EtcdStore; logger: Logger; model: () => { view: ModelView; revision: number };
  observe?: (method: string, code: string) => void;
}): PolicyServiceServer {
  const { store, logger } = opts;
  const m = (method: string) => (code: string) => opts.observe?.(method, code);
  return {
    apply: unary(logger, async (req) => {
      if (req.documents.length + req.deletes.length > LIMITS.documentsPerBatch) {
        throw new ValidationError([{ document: "request", field: "documents", reason: `at most ${LIMITS.documentsPerBatch} documents and deletions per batch` }]);
      }
      const deletions: Deletion[] = req.deletes.map((d, i) => ({ ref: checkedRef(d.object, `deletion ${i + 1}`, "object"), expectedRevision: d.expectedRevision }));
      const expect = new Map<string, number>();
      const objects: ModelObject[] = req.documents.map((d, i) => {
        const o = documentFromPb(d);
        if (!o) throw new ValidationError([{ document: `document ${i + 1}`, field: "kind", reason: "must be a profile or an endpoint" }]);
        if (d.expectedRevision !== undefined) expect.set(objectKey(o), d.expectedRevision);
        return o;
      });
      const r = await store.apply(objects, expect.size ? expect : undefined, deletions);
      logger.info({ documents: objects.length, changed: r.changed, deleted: r.deleted, revision: r.revision }, "applied");
      return { revision: r.revision, changed: r.changed, deleted: r.deleted };
    }, m("Apply")),
    delete: unary(logger, async (req) => {
      const refs: ObjectRef[] = req.objects.map((o, i) => checkedRef(o, `object ${i + 1}`, "kind"));
      const r = await store.delete(refs, req.ignoreMissing);
      logger.info({ objects: refs.length, deleted: r.changed, revision: r.revision }, "deleted");
      return { revision: r.revision, deleted: r.changed };
    }, m("Delete")),
    getProfile: unary(logger, async (req) => {
      checkRefId("id", req.id);
      const r = await store.getObject({ kind: "Profile", id: req.id });
      if (r.object?.kind !== "Profile") throw new ApiError("NOT_FOUND", `profile ${req.id} not found`);
      return { profile: profileToPb(r.object.profile, r.modRevision), revision: r.revision };
    }, m("GetProfile")),
    getEndpoint: unary(logger, async (req) => {
      const key = endpointKeyFromPb(req.key);
      checkKey(key);
      const r = await store.getObject({ kind: "Endpoint", key });
      if (r.object?.kind !== "Endpoint") throw new ApiError("NOT_FOUND", `endpoint ${endpointKeyString(key)} not found`);
      return { endpoint: endpointToPb(r.object.endpoint, r.modRevision), revision: r.revision };
    }, m("GetEndpoint")),
    listProfiles: unary(logger, async () => {
      const r = await store.list("Profile");
      return {
        profiles: r.objects.flatMap((o) => (o.object.kind === "Profile" ? [profileToPb(o.object.profile, o.modRevision)] : [])),
        revision: r.revision,
      };
    }, m("ListProfiles")),
    listEndpoints: unary(logger, async (req) => {
      if (req.host) checkRefId("host", req.host);
      const r = await store.list("Endpoint", req.host || undefined);
      return {
        endpoints: r.objects.flatMap((o) => (o.object.kind === "Endpoint" ? [endpointToPb(o.object.endpoint, o.modRevision)] : [])),
        revision: r.revision,
      };
    }, m("ListEndpoints")),
    getRevision: unary(logger, async () => ({ revision: await store.modelRevision() }), m("GetRevision")),
    trace: unary(logger, async (req) => {
      const bad = (field: string, reason: string) => new ValidationError([{ document: "trace", field, reason }]);
      const s = parseAddress(req.src), d = parseAddress(req.dst);
      if (!s) throw bad("src", "not an IP address");
      if (!d) throw bad("dst", "not an IP address");
      if (s.version !== d.version) throw bad("dst", "src and dst must be of one IP family");
      const p = req.protocol.toLowerCase();
      const protocol = PROTOCOL_NUMBERS[p] ?? (/^\d{1,3}$/.test(p) ? Number(p) : NaN);
      if (!(protocol >= 1 && protocol <= 255)) throw bad("protocol", "must be a protocol name or a number 1-255");
      for (const [f, v, max] of [["src_port", req.srcPort, 65535], ["dst_port", req.dstPort, 65535], ["icmp_type", req.icmpType, 255], ["icmp_code", req.icmpCode, 255]] as const) {
        if (v !== undefined && v > max) throw bad(f, `must be 0-${max}`);
      }
      // A network is an id like a profile's; "" names the default network (DESIGN §2.10).
      for (const [f, v] of [["from_network", req.fromNetwork], ["to_network", req.toNetwork]] as const) {
        const problem = v ? idProblem(v, LIMITS.idLength) : undefined;
        if (problem) throw bad(f, problem);
      }
      const { view, revision } = opts.model();
      const pkt = {
        src: req.src, dst: req.dst, protocol, srcPort: req.srcPort, dstPort: req.dstPort, icmpType: req.icmpType, icmpCode: req.icmpCode,
        ...(req.fromNetwork !== undefined ? { fromNetwork: req.fromNetwork } : {}),
        ...(req.toNetwork !== undefined ? { toNetwork: req.toNetwork } : {}),
      };
      let r;
      try {
        r = createEvaluator(view).trace(pkt);
      } catch (e) {
        // Holders on several networks: the caller must say which (DESIGN §2.8).
        if (e instanceof AmbiguousAddressError) throw bad(e.side === "src" ? "from_network" : "to_network", e.message);
        throw e;
      }
      const verdict = (v: "allow" | "deny") => (v === "allow" ? Verdict.VERDICT_ALLOW : Verdict.VERDICT_DENY);
      return {
        verdict: verdict(r.verdict),
        policed: r.policed,
        revision,
        steps: r.steps.map((st) => ({
          direction: st.direction, endpoint: st.endpoint, network: st.network ?? "", verdict: verdict(st.verdict), decision: st.decision.kind,
          profile: "profile" in st.decision ? st.decision.profile : "",
          ruleIndex: st.decision.kind === "rule" ? st.decision.ruleIndex : -1,
        })),
      };
    }, m("Trace")),
  };
}
