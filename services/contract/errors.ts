// The error type of the API boundary. Everything a caller can be told about
// a failed request is an ApiError with a gRPC status code; conversion to
// gRPC happens in one place (grpc-server.ts toServiceError).
export type ApiErrorCode =
  | "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" | "ABORTED" | "UNAVAILABLE" | "INTERNAL" | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED";

export class ApiError extends Error {
  /**
   * `etcdClass` marks errors that came from etcd (controller/etcd-errors.ts):
   * counted by class in metrics.
   */
  constructor(readonly code: ApiErrorCode, message: string, readonly etcdClass?: string) {
    super(message);
    this.name = "ApiError";
  }
}

/**
 * Trailing metadata set on every status the server decided (an ApiError or a
 * validation error): lets a client tell "the controller answered UNAVAILABLE
 * (etcd is down)" from "the controller could not be reached".
 */
export const SERVER_ERROR_METADATA = "palisade-error";
