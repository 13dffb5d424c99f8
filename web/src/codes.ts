/**
 * The `code` of the gateway's error answers (README "Error codes", gateway/errors.py),
 * which the app branches on rather than on HTTP statuses or messages.
 *
 * An answer without a code did not come from the gateway (a proxy's 502): it is named by
 * its status (`HTTP_502`). A code this app does not know (a newer server's) is treated by
 * its HTTP status, as an answer without one is.
 */

/** A retry may cure these: the same request may succeed later (after Retry-After). */
export const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  "REQUEST_TIMEOUT", "TOO_MANY_PARTS_WAITING", "INTERNAL", "SERVER_BUSY", "BACKEND_UNAVAILABLE",
  "NOT_READY", "BACKEND_TIMEOUT", "RATE_LIMITED", "UNAVAILABLE", "SIGN_IN_THROTTLED",
  "SIGN_UP_THROTTLED", "AUTH_BUSY", "THROTTLE_UNAVAILABLE", "REVOCATION_UNAVAILABLE",
  "SESSION_CHECK_UNAVAILABLE", "TOO_MANY_UPLOADS", "TOO_MANY_STREAMS",
  "FILE_EVENTS_UNAVAILABLE", "FILE_EVENTS_INTERRUPTED", "LINK_GUESSES_THROTTLED", "SHARE_BUSY",
  "OIDC_START_THROTTLED", "OIDC_PROVIDER_UNAVAILABLE", "OIDC_FLOWS_UNAVAILABLE",
]);

/** The session is missing, over or refused: refresh it (once), else sign in again. */
export const SIGNED_OUT_CODES: ReadonlySet<string> = new Set([
  "ACCESS_TOKEN_MISSING", "ACCESS_TOKEN_INVALID", "UNAUTHENTICATED", "SESSION_REVOKED",
  "REFRESH_TOKEN_INVALID", "REFRESH_TOKEN_REUSED", "BAD_CREDENTIALS",
  // Single sign-on's, answered as pages to a browser.
  "OIDC_CODE_REFUSED", "OIDC_ID_TOKEN_INVALID",
]);

/** Refusals the same request will meet again. */
export const PERMANENT_CODES: ReadonlySet<string> = new Set([
  "INVALID_REQUEST", "ROUTE_NOT_FOUND", "WEB_APP_NOT_BUILT", "METHOD_NOT_ALLOWED",
  "REQUEST_TOO_LARGE", "HEADERS_TOO_LARGE", "INVALID_ARGUMENT", "PERMISSION_DENIED",
  "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED",
  "SERVICE_CREDENTIAL_REQUIRED", "FILE_TOO_LARGE", "SINGLE_PUT_TOO_LARGE", "QUOTA_EXCEEDED",
  "UPLOAD_ABORTED", "UPLOAD_COMPLETE", "UPLOAD_GONE", "NO_CHECKSUMS", "PART_NOT_RECORDED",
  "PART_NOT_STORED", "PART_ETAG_MISMATCH", "PART_SIZE_MISMATCH", "PART_CHECKSUM_UNKNOWN",
  "PARTS_REFUSED", "NOT_UPLOADED", "UPLOAD_FAILED", "INVALID_PAGE_TOKEN", "LINK_NOT_FOUND",
  "PASSWORD_REQUIRED",
  "OIDC_NOT_CONFIGURED", "OIDC_FLOW_UNKNOWN", "OIDC_PROVIDER_ERROR", "OIDC_EMAIL_NOT_VERIFIED",
  "OIDC_EMAIL_UNUSABLE", "OIDC_IDENTITY_UNUSABLE", "OIDC_ACCOUNT_LINKED_ELSEWHERE",
]);

/** No answer at all: unreachable, dropped, timed out (status 0). */
export const UNREACHABLE = "UNREACHABLE";
/** The file (or upload) is not the caller's, or no longer exists. */
export const NOT_FOUND = "NOT_FOUND";
/** A file id already taken (a creation whose answer was lost, retried). */
export const ALREADY_EXISTS = "ALREADY_EXISTS";

/** Statuses that say "not now" rather than "never", for answers without a known code. */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

function known(code: string): boolean {
  return TRANSIENT_CODES.has(code) || SIGNED_OUT_CODES.has(code) || PERMANENT_CODES.has(code);
}

/** The code of an error answer: its body's `code`, else `HTTP_<status>`. */
export function codeOf(status: number, body: Record<string, unknown>): string {
  return typeof body.code === "string" && body.code ? body.code : `HTTP_${status}`;
}

/** Whether the same request may succeed later. */
export function isTransientCode(code: string, status: number): boolean {
  if (code === UNREACHABLE) return true;
  return known(code) ? TRANSIENT_CODES.has(code) : TRANSIENT_STATUS.has(status);
}

/** Whether the answer says the session is missing or over. */
export function isSignedOutCode(code: string, status: number): boolean {
  return known(code) ? SIGNED_OUT_CODES.has(code) : status === 401;
}
