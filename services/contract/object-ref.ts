// A reference to one model object, by identity only: what deletions and
// reconcilers speak of. Shared by the API's server and its clients.
import type { EndpointKey } from "../model/index.js";

export type ObjectRef = { kind: "Profile"; id: string } | { kind: "Endpoint"; key: EndpointKey };
