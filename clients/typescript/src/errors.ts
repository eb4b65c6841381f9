/**
 * Every error the client throws, in one tree.
 *
 *     QuarryError
 *     ├── UsageError                 the client was called with something it cannot use; nothing was sent
 *     ├── IntegrityError             a local check failed: a download's sha256, a file that changed mid-upload
 *     ├── UploadFailed               an upload waited for ended FAILED, CANCELLED or EXPIRED (.upload)
 *     ├── VersionFailed              a version waited for ended FAILED (.version)
 *     └── RpcError                   a call ended with a gRPC status (.code, .reason, .metadata, .retryDelayMs)
 *         ├── Cancelled              CANCELLED (also: the caller's AbortSignal fired)
 *         ├── InvalidArgument        INVALID_ARGUMENT (.violations)
 *         ├── DeadlineExceeded       DEADLINE_EXCEEDED
 *         ├── NotFound               NOT_FOUND
 *         ├── AlreadyExists          ALREADY_EXISTS
 *         ├── PermissionDenied       PERMISSION_DENIED
 *         ├── Unauthenticated        UNAUTHENTICATED
 *         ├── ResourceExhausted      RESOURCE_EXHAUSTED
 *         ├── FailedPrecondition     FAILED_PRECONDITION
 *         │   ├── WrongOffset        reason WRONG_OFFSET (.expectedOffset)
 *         │   ├── WrongState         reason WRONG_STATE, UPLOAD_CANCELLED, UPLOAD_EXPIRED, UPLOAD_FAILED, …
 *         │   └── BaseMoved          reason BASE_MOVED
 *         ├── Aborted                ABORTED
 *         ├── OutOfRange             OUT_OF_RANGE
 *         ├── Unimplemented          UNIMPLEMENTED
 *         ├── Internal               INTERNAL, UNKNOWN
 *         ├── Unavailable            UNAVAILABLE
 *         │   └── ConnectFailed      UNAVAILABLE without a Quarry reason: the server could not be reached
 *         └── DataLoss               DATA_LOSS
 *             └── ChecksumMismatch   reason CHECKSUM_MISMATCH
 *
 * The class is chosen by the status code and the `google.rpc.ErrorInfo` reason of the
 * `grpc-status-details-bin` trailer, never by the message text (the same rules as the Python SDK).
 */
import { Code, ConnectError } from "@connectrpc/connect";

import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { ErrorReason } from "./gen/quarry/v1/error_reason_pb.js";

/** The ErrorInfo domain of Quarry's own errors (AIP-193). */
export const ERROR_DOMAIN = "quarry.dev";

/** Root of every error the client throws. */
export class QuarryError extends Error {
  override name = "QuarryError";
}

/** The client was called with something it cannot use; nothing was sent to the server. */
export class UsageError extends QuarryError {
  override name = "UsageError";
}

/** Bytes on this machine do not match what they should be. */
export class IntegrityError extends QuarryError {
  override name = "IntegrityError";
}

/** An upload the caller waited for ended FAILED, CANCELLED or EXPIRED. */
export class UploadFailed extends QuarryError {
  override name = "UploadFailed";
  constructor(message: string, readonly upload: unknown) {
    super(message);
  }
}

/** A version the caller waited for ended FAILED. */
export class VersionFailed extends QuarryError {
  override name = "VersionFailed";
  constructor(message: string, readonly version: unknown) {
    super(message);
  }
}

/** One bad field of a request, from the `google.rpc.BadRequest` detail. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** What an RpcError carries besides its code and message. */
export interface RpcErrorDetails {
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  violations?: FieldViolation[];
  retryDelayMs?: number;
  cause?: unknown;
}

/** gRPC status code names, by number (as on the wire). */
export const STATUS_NAMES: Record<number, string> = {
  0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
  6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
  10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};

/** A call ended with a non-OK gRPC status. */
export class RpcError extends QuarryError {
  override name = "RpcError";
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Record<string, string>;
  readonly violations: FieldViolation[];
  readonly retryDelayMs: number | undefined;

  constructor(readonly code: Code, readonly rawMessage: string, details: RpcErrorDetails = {}) {
    super(`${STATUS_NAMES[code] ?? code}: ${rawMessage}`, { cause: details.cause });
    this.reason = details.reason ?? "";
    this.domain = details.domain ?? "";
    this.metadata = { ...(details.metadata ?? {}) };
    this.violations = [...(details.violations ?? [])];
    this.retryDelayMs = details.retryDelayMs;
  }

  /** The status code's name, e.g. "NOT_FOUND". */
  get status(): string {
    return STATUS_NAMES[this.code] ?? String(this.code);
  }

  /** The reason as the contract's ErrorReason (UNSPECIFIED for none, or one newer than this client). */
  get errorReason(): ErrorReason {
    return (ErrorReason as unknown as Record<string, ErrorReason | undefined>)[this.reason] ?? ErrorReason.UNSPECIFIED;
  }
}

/** The call was cancelled (by the caller's AbortSignal, or the server). */
export class Cancelled extends RpcError { override name = "Cancelled"; }
/** The request was malformed; `violations` names the bad fields. */
export class InvalidArgument extends RpcError { override name = "InvalidArgument"; }
/** The call did not finish before its deadline. */
export class DeadlineExceeded extends RpcError { override name = "DeadlineExceeded"; }
/** The named resource does not exist. */
export class NotFound extends RpcError { override name = "NotFound"; }
/** A resource with that name already exists. */
export class AlreadyExists extends RpcError { override name = "AlreadyExists"; }
/** The caller may not do that. */
export class PermissionDenied extends RpcError { override name = "PermissionDenied"; }
/** The caller sent no token, or one the server does not accept. */
export class Unauthenticated extends RpcError { override name = "Unauthenticated"; }
/** A quota or size limit was reached. */
export class ResourceExhausted extends RpcError { override name = "ResourceExhausted"; }
/** The resource is not in a state that allows the request. */
export class FailedPrecondition extends RpcError { override name = "FailedPrecondition"; }
/** An upload write started somewhere other than where the upload continues. */
export class WrongOffset extends FailedPrecondition {
  override name = "WrongOffset";
  /** The offset the server expects the write to start at. */
  get expectedOffset(): number {
    return Number(this.metadata["expected_offset"] ?? "0");
  }
}
/** The upload or version is in a state that does not allow the request. */
export class WrongState extends FailedPrecondition { override name = "WrongState"; }
/** A commit's base version is no longer current and the same paths changed. */
export class BaseMoved extends FailedPrecondition { override name = "BaseMoved"; }
/** A concurrent change got in the way; retrying may succeed. */
export class Aborted extends RpcError { override name = "Aborted"; }
/** A read or write past the end. */
export class OutOfRange extends RpcError { override name = "OutOfRange"; }
/** The server does not implement that call, or not with this deployment. */
export class Unimplemented extends RpcError { override name = "Unimplemented"; }
/** The server failed unexpectedly. */
export class Internal extends RpcError { override name = "Internal"; }
/** The server or one of its dependencies is unavailable; retrying may succeed. */
export class Unavailable extends RpcError { override name = "Unavailable"; }
/** The server could not be reached (or the connection broke) — the transport's word, not Quarry's. */
export class ConnectFailed extends Unavailable { override name = "ConnectFailed"; }
/** Bytes were corrupted or lost. */
export class DataLoss extends RpcError { override name = "DataLoss"; }
/** A checksum of the sent bytes differs from the declared one. */
export class ChecksumMismatch extends DataLoss { override name = "ChecksumMismatch"; }

type RpcErrorClass = new (code: Code, message: string, details?: RpcErrorDetails) => RpcError;

const BY_CODE: Record<number, RpcErrorClass> = {
  [Code.Canceled]: Cancelled,
  [Code.Unknown]: Internal,
  [Code.InvalidArgument]: InvalidArgument,
  [Code.DeadlineExceeded]: DeadlineExceeded,
  [Code.NotFound]: NotFound,
  [Code.AlreadyExists]: AlreadyExists,
  [Code.PermissionDenied]: PermissionDenied,
  [Code.Unauthenticated]: Unauthenticated,
  [Code.ResourceExhausted]: ResourceExhausted,
  [Code.FailedPrecondition]: FailedPrecondition,
  [Code.Aborted]: Aborted,
  [Code.OutOfRange]: OutOfRange,
  [Code.Unimplemented]: Unimplemented,
  [Code.Internal]: Internal,
  [Code.Unavailable]: Unavailable,
  [Code.DataLoss]: DataLoss,
};

const WRONG_STATE_REASONS = ["WRONG_STATE", "UPLOAD_CANCELLED", "UPLOAD_EXPIRED", "UPLOAD_FAILED",
  "UPLOAD_FINISHED", "UPLOAD_NOT_CANCELLABLE", "UPLOAD_NOT_FAILED"];

// Reasons that refine a code's class. An unknown reason keeps the code's class, so new reasons are safe.
const BY_REASON = new Map<string, RpcErrorClass>([
  [`${Code.FailedPrecondition}/WRONG_OFFSET`, WrongOffset],
  [`${Code.FailedPrecondition}/BASE_MOVED`, BaseMoved],
  [`${Code.DataLoss}/CHECKSUM_MISMATCH`, ChecksumMismatch],
  ...WRONG_STATE_REASONS.map((r): [string, RpcErrorClass] => [`${Code.FailedPrecondition}/${r}`, WrongState]),
]);

/** The error class for a status code and an ErrorInfo reason. */
export function errorClassFor(code: Code, reason = ""): RpcErrorClass {
  if (code === Code.Unavailable && !reason) {
    return ConnectFailed; // Quarry's own UNAVAILABLE always carries a reason; a broken transport never does
  }
  return BY_REASON.get(`${code}/${reason}`) ?? BY_CODE[code] ?? Internal;
}

function durationMs(seconds: bigint, nanos: number): number {
  return Number(seconds) * 1000 + nanos / 1e6;
}

/** Our error for anything a Connect call threw: a ConnectError with its google.rpc details, or another. */
export function fromConnect(error: unknown): QuarryError {
  if (error instanceof QuarryError) {
    return error;
  }
  const connect = ConnectError.from(error);
  const details: RpcErrorDetails = { cause: error };
  // Only Quarry's own ErrorInfo names a Quarry reason: a proxy in the path may add one of another domain.
  const info = connect.findDetails(ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN);
  if (info !== undefined) {
    details.reason = info.reason;
    details.domain = info.domain;
    details.metadata = { ...info.metadata };
  }
  const bad = connect.findDetails(BadRequestSchema)[0];
  if (bad !== undefined) {
    details.violations = bad.fieldViolations.map((v) => ({ field: v.field, description: v.description }));
  }
  const retry = connect.findDetails(RetryInfoSchema)[0];
  if (retry?.retryDelay !== undefined) {
    details.retryDelayMs = durationMs(retry.retryDelay.seconds, retry.retryDelay.nanos);
  }
  const kind = errorClassFor(connect.code, details.reason);
  return new kind(connect.code, connect.rawMessage || (STATUS_NAMES[connect.code] ?? "error").toLowerCase(), details);
}
