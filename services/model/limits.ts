// Documented limits (README "Limits"). They keep any single object far below
// etcd's request size and gRPC's message size, and bound render cost.
export const LIMITS = {
  idLength: 128,
  hostLength: 253,
  tagsPerProfile: 256,
  rulesPerDirection: 1000,
  portsPerRule: 512,
  netsPerEndpoint: 256,
  profilesPerEndpoint: 64,
  labelsPerObject: 64,
  documentsPerBatch: 5000,
} as const;
