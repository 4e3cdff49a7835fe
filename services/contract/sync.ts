// The sync protocol's messages and client as the driver sees them: the
// driver reaches generated code only through here (DESIGN §8.1).
export {
  DataplaneSyncServiceClient, InterfaceState, type FlowReport, type Hello, type SyncRequest, type SyncResponse,
} from "../gen/palisade/sync/v1/sync.js";
