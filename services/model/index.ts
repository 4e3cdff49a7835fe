// Public surface of the model package.
export * from "./types.js";
export * from "./errors.js";
export * from "./limits.js";
export { parseCidr, formatCidr, parseAddress, formatAddress, cidrContains, type Cidr } from "./ip.js";
export { ruleFamilies, validateProfile, validateEndpoint, ID_RE, INTERFACE_RE, printable } from "./validate.js";
export {
  splitDocuments, parseDocuments, parseDocument, parseRefs, validateObject, toDocument, toYaml, ruleToDocument,
  objectKey, describe, parseEndpointKey,
} from "./document.js";
export { createEvaluator, type Packet, type TraceResult, type TraceStep, type Decision, type ModelView } from "./evaluate.js";
