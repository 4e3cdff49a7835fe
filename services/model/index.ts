// Public surface of the model package.
export * from "./types.js";
export * from "./errors.js";
export * from "./limits.js";
export { parseCidr, formatCidr, parseAddress, formatAddress, cidrContains, type Cidr } from "./ip.js";
export { ruleFamilies, validateProfile, validateEndpoint, INTERFACE_RE, printable } from "./validate.js";
export { ID_RE, IPV6_EXTENSION_HEADERS, MAC_RE, MULTIPORT_SLOTS, PORT_PROTOCOL_NAMES, chunkPorts, hostAddress, idProblem, type PortSpan } from "./rule-facts.js";
export {
  splitDocuments, parseDocuments, parseDocument, parseRefs, validateObject, toDocument, toYaml, ruleToDocument,
  objectKey, describe, parseEndpointKey,
} from "./document.js";
export { mirrorRule } from "./mirror.js";
export { AmbiguousAddressError, createEvaluator, type Packet, type TraceResult, type TraceStep, type Decision, type ModelView } from "./evaluate.js";
