/**
 * The gateway's REST API (docs: /docs, contract: rest-v1.md), called with native fetch:
 * v1 for the session, the list, downloads, aborts and deletes; v2 for uploads.
 *
 * The session lives in HttpOnly cookies the page never sees: every call sends them
 * (`credentials: "include"`). When the access token has expired the gateway answers 401
 * with a code saying so (ACCESS_TOKEN_INVALID, codes.ts); the client then refreshes the
 * session once (GET /api/auth/refresh) and repeats the call. Failures are told apart by
 * their `code` (codes.ts), never by the HTTP status.
 */

import type { ChecksumAlgorithm } from "./checksum";
import { codeOf, isSignedOutCode, isTransientCode, UNREACHABLE as NO_ANSWER } from "./codes";
import { parseRetryAfter, type TransientFailure } from "./retry";

/** A call that has not been answered after this long is given up (and retried). */
const CALL_TIMEOUT_MS = 30_000;

/** A refusal or failure: `message` worded for people (the gateway's `error` field),
 * `code` for the app to branch on (the gateway's `code`; UNREACHABLE without an answer). */
export class ApiError extends Error implements TransientFailure {
  constructor(message: string, readonly status: number, readonly code: string,
              readonly retryAfterMs: number | null = null) {
    super(message);
    this.name = "ApiError";
  }

  /** Worth another try later: no answer at all (unreachable, dropped, timed out),
   * throttling, or a server error or outage. 500 is among them: a server bug or a
   * dependency down is not the user's fault, and the retries are bounded (retry.ts). */
  get transient(): boolean {
    return isTransientCode(this.code, this.status);
  }

  /** The session is missing or over (the sign-in form says so). */
  get signedOut(): boolean {
    return isSignedOutCode(this.code, this.status);
  }
}

/** An error's message, for showing to the user. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const SESSION_ENDED = "Your session has ended. Please sign in again.";
const UNREACHABLE = "Cannot reach Dropfile. Check your connection and try again.";

let sessionEndedHandler: () => void = () => {};

/** Called once a session cannot be refreshed, so the app can show the sign-in form. */
export function onSessionEnded(handler: () => void): void {
  sessionEndedHandler = handler;
}

async function send(method: string, path: string, body?: unknown): Promise<Response> {
  try {
    return await fetch(path, {
      method,
      credentials: "include",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch {
    throw new ApiError(UNREACHABLE, 0, NO_ANSWER);
  }
}

/** Whether an answer says the session is missing or over (its code; 401 without one). */
async function signedOut(response: Response): Promise<boolean> {
  if (response.ok) return false;
  return isSignedOutCode(codeOf(response.status, await readJson(response.clone())),
                         response.status);
}

async function readJson(response: Response): Promise<Record<string, unknown>> {
  try {
    const value: unknown = await response.json();
    return value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

// Concurrent calls that all meet a 401 share one refresh: each refresh rotates the refresh
// token. Other tabs refreshing at the same moment are fine (the auth service gives a token
// presented again within its grace window the same new one); after the window, an old token
// revokes the session.
let refreshing: Promise<boolean> | null = null;

function refreshSession(): Promise<boolean> {
  refreshing ??= send("GET", "/api/auth/refresh")
    .then((response) => response.ok, () => false)
    .finally(() => { refreshing = null; });
  return refreshing;
}

interface CallOptions {
  /** Refresh the session when it is over and retry once (not for sign-in, where 401 means bad
   * credentials). */
  refresh?: boolean;
}

/** Sends one API call and returns its JSON body; throws ApiError unless the answer is 2xx. */
export async function call<T>(method: string, path: string, body?: unknown,
                              { refresh = true }: CallOptions = {}): Promise<T> {
  let response = await send(method, path, body);
  if (refresh && await signedOut(response)) {
    if (await refreshSession()) response = await send(method, path, body);
    if (await signedOut(response)) {
      sessionEndedHandler();
      const reply = await readJson(response);
      throw new ApiError(SESSION_ENDED, response.status, codeOf(response.status, reply));
    }
  }
  const reply = await readJson(response);
  if (!response.ok) {
    const message = typeof reply.error === "string" && reply.error
      ? reply.error : `The server answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, response.status, codeOf(response.status, reply),
                       parseRetryAfter(response.headers.get("Retry-After")));
  }
  return reply as T;
}

// --- auth ------------------------------------------------------------------------------------

export function signUp(user: { email: string; name: string; password: string }): Promise<unknown> {
  return call("POST", "/api/auth/signup", { user }, { refresh: false });
}

export function signIn(user: { email: string; password: string },
                       rememberMe: boolean): Promise<unknown> {
  return call("POST", "/api/auth/signin", { user, rememberMe }, { refresh: false });
}

export function signOut(): Promise<unknown> {
  return call("GET", "/api/auth/signout", undefined, { refresh: false });
}

export interface SignInOptions {
  password: boolean;
  /** Single sign-on with OpenID Connect, when the deployment configured an issuer. */
  oidc: { name: string; loginUrl: string } | null;
}

/** The ways of signing in this deployment offers. */
export function signInOptions(): Promise<SignInOptions> {
  return call("GET", "/api/v2/auth/options", undefined, { refresh: false });
}

/** Whether the browser holds a usable session (refreshing it if needed), without side effects. */
export async function hasSession(): Promise<boolean> {
  const check = () => send("GET", "/api/auth/authenticate");
  let response = await check();
  if (await signedOut(response) && await refreshSession()) response = await check();
  if (response.ok) return true;
  if (await signedOut(response)) return false;
  const reply = await readJson(response);
  throw new ApiError(reply.error as string || UNREACHABLE, response.status,
                     codeOf(response.status, reply));
}

// --- files -----------------------------------------------------------------------------------

export type FileStatus = "UPLOADING" | "UPLOADED" | "FAILED";

export interface StoredFile {
  fileId: string;
  fileName: string;
  mimeType: string;
  size: number;
  s3Key: string;
  status: FileStatus;
  createdAt: string;
}

export async function listFiles(): Promise<StoredFile[]> {
  return (await call<{ files: StoredFile[] }>("GET", "/api/files/list")).files;
}

export interface FilePage {
  files: StoredFile[];
  /** The next page's token; null on the last page. */
  nextPageToken: string | null;
}

export interface FilePageRequest {
  /** 1..1000 (the server's default: 100). */
  pageSize?: number;
  /** The previous page's nextPageToken, unchanged. */
  pageToken?: string | null;
  /** Only files whose name contains this, whatever its case (the server filters). */
  name?: string;
}

/** One page of the caller's files, newest first (GET /api/v2/files). */
export function listFilesPage(request: FilePageRequest = {}): Promise<FilePage> {
  const query = new URLSearchParams();
  if (request.pageSize) query.set("pageSize", String(request.pageSize));
  if (request.pageToken) query.set("pageToken", request.pageToken);
  if (request.name) query.set("name", request.name);
  const search = query.toString();
  return call<FilePage>("GET", `/api/v2/files${search ? `?${search}` : ""}`);
}

export function abortUpload(fileId: string, uploadId: string): Promise<unknown> {
  return call("POST", "/api/files/abort-upload", { uploadId, file_id: fileId });
}

// --- v2 uploads (server-chosen part sizes, checksummed parts, resume) ----------------------

export interface UploadLayout {
  fileId: string;
  uploadId: string;
  partSize: number;
  partCount: number;
  checksumAlgorithm: ChecksumAlgorithm;
}

export interface StoredPart {
  partNumber: number;
  size: number;
  etag: string;
  checksum: string | null;
}

export interface UploadState {
  state: "RECEIVING_PARTS" | "COMPLETED" | "UPLOADED" | "FAILED";
  file: StoredFile;
  uploadId: string;
  partSize: number;
  partCount: number;
  checksumAlgorithm: ChecksumAlgorithm | null;
  storedParts: StoredPart[];
}

function filePath(fileId: string): string {
  return `/api/v2/files/${encodeURIComponent(fileId)}`;
}

export function createUpload(file: { fileId: string; name: string; type: string; size: number },
                             checksumAlgorithm: ChecksumAlgorithm): Promise<UploadLayout> {
  return call("POST", "/api/v2/files", {
    fileId: file.fileId, fileName: file.name, mimeType: file.type, size: file.size,
    checksumAlgorithm,
  });
}

/** Where an upload stands, with the parts storage already holds (to resume it). */
export function uploadState(fileId: string): Promise<UploadState> {
  return call("GET", `${filePath(fileId)}/upload`);
}

export interface PartTarget {
  url: string;
  /** Headers the PUT must send as they are (signed): the part's checksum. */
  headers: Record<string, string>;
}

/** Presigned URLs for parts `first`..`last` (1-based), each signed for its checksum. */
export async function partUrls(fileId: string, first: number, last: number,
                               checksums: string[]): Promise<Map<number, PartTarget>> {
  const reply = await call<{ parts: { partNumber: number; url: string;
                                      headers: Record<string, string> }[] }>(
    "POST", `${filePath(fileId)}/part-urls`,
    { first_part: first, last_part: last, checksums });
  return new Map(reply.parts.map((part) => [part.partNumber,
                                            { url: part.url, headers: part.headers ?? {} }]));
}

/** A part storage holds, as recorded: its ETag (quotes or not) and the checksum sent with it. */
export interface PartRecord {
  partNumber: number;
  size: number;
  etag: string;
  checksum: string;
}

/** Records up to 100 parts in one request; a refusal names its part ("part N: ..."). */
export function recordParts(fileId: string, parts: PartRecord[]): Promise<unknown> {
  return call("POST", `${filePath(fileId)}/parts/batch`, {
    parts: parts.map((part) => ({ ...part, etag: part.etag.replaceAll('"', "") })),
  });
}

/** Completes with the recorded parts. */
export function completeUpload(fileId: string, uploadId: string): Promise<unknown> {
  return call("POST", `${filePath(fileId)}/complete`, { uploadId });
}

export async function downloadUrl(s3Key: string): Promise<string> {
  return (await call<{ url: string }>("POST", "/api/files/get-download-url", { s3_key: s3Key })).url;
}

export function deleteFile(fileId: string): Promise<unknown> {
  return call("DELETE", "/api/files/delete", { file_id: fileId });
}
