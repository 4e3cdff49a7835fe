// etcd key layout. Everything lives under one prefix (default /palisade/v1):
//
//   <prefix>/model/profiles/<id>                          Profile document (JSON)
//   <prefix>/model/endpoints/<host>/<orch>/<wl>/<id>       Endpoint document (JSON)
//   <prefix>/model/revision                               touched by every model write,
//                                                         so its mod_revision is "the model revision"
//   <prefix>/status/hosts/<host>                          host status, under a controller lease
//   <prefix>/status/endpoints/<host>/<orch>/<wl>/<id>      endpoint status, same lease
//   <prefix>/status/progress/<replica>                    applied revision of every host the
//                                                         replica serves, one key, same lease
//                                                         (DESIGN §9.3: one write per flush, not per ack)
//   <prefix>/compactor/election/leader/<lease>              compaction leader election (leased)
//
// Identifiers are validated ([A-Za-z0-9_.-]) before they become keys, so no
// component can contain "/".
import { endpointKeyString, type EndpointKey } from "../model/index.js";

export function createKeys(prefix: string) {
  const p = prefix.replace(/\/+$/, "");
  return {
    model: `${p}/model/`,
    profiles: `${p}/model/profiles/`,
    endpoints: `${p}/model/endpoints/`,
    revision: `${p}/model/revision`,
    status: `${p}/status/`,
    hostStatus: `${p}/status/hosts/`,
    endpointStatus: `${p}/status/endpoints/`,
    progress: `${p}/status/progress/`,
    compactor: `${p}/compactor/`,
    profile: (id: string) => `${p}/model/profiles/${id}`,
    endpoint: (k: EndpointKey) => `${p}/model/endpoints/${endpointKeyString(k)}`,
  };
}

export type Keys = ReturnType<typeof createKeys>;
