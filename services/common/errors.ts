// The error type of the API boundary. Everything a caller can be told about
// a failed request is an ApiError with a gRPC status code; conversion to and
// from gRPC happens in one place (grpc-errors.ts).
export type ApiErrorCode = "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" | "ABORTED" | "UNAVAILABLE" | "INTERNAL" | "PERMISSION_DENIED";

export class ApiError extends Error {
  constructor(readonly code: ApiErrorCode, message: string) {
    super(message);
    this.name = "ApiError";
  }
}
