// The policy API's messages and client, for clients that build requests
// themselves (the OpenStack adapter's reconciler).
export { Document, ObjectRef as ObjectRefPb, PolicyServiceClient } from "../gen/palisade/policy/v1/policy.js";
