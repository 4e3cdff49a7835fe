// Flow records as clients (palisadectl) read them: FlowService's client and
// messages (DESIGN §5.9). The CLI reaches generated code only through here.
export { FlowServiceClient, type FlowFilter, type FlowRecord, type ListResponse, type WatchResponse } from "../gen/palisade/flow/v1/flow.js";
