// Status as clients (palisadectl, the OpenStack adapter) read it: host and
// endpoint status and the watch stream's messages.
export {
  EndpointState, type EndpointStatus, type HostStatus, type WatchStatusResponse,
} from "../gen/palisade/status/v1/status.js";
