/**
 * Live file status: GET /api/v2/events, a Server-Sent Events stream of every status change of
 * the signed-in user's files, read with the browser's EventSource (same origin, so the
 * session cookies go with it).
 *
 * The stream replays nothing: whoever listens re-reads the file list each time it opens.
 * EventSource reconnects by itself when a stream ends; when it gives up (an HTTP error: an
 * expired session, the service down), the session is refreshed if need be and the stream
 * reopened after a growing delay. While it is not open the file list polls, as it always did.
 */
import * as api from "./api";
import type { FileStatus } from "./api";

export type LiveStatus = FileStatus | "DELETED";

export interface FileEvent {
  fileId: string;
  status: LiveStatus;
  /** The stored object's size once UPLOADED, else the declared size. */
  size: number;
  at: string;
}

export interface LiveStatusHandlers {
  onEvent(event: FileEvent): void;
  /** True when a stream opened (changes from now on arrive), false when it dropped. */
  onConnected(connected: boolean): void;
}

const EVENTS_PATH = "/api/v2/events";
const REOPEN_DELAYS_MS = [1_000, 2_000, 5_000, 10_000, 30_000];
const STATUSES: ReadonlySet<string> = new Set(["UPLOADING", "UPLOADED", "FAILED", "DELETED"]);

let handlers: LiveStatusHandlers | null = null;
let source: EventSource | null = null;
let reopenTimer: ReturnType<typeof setTimeout> | undefined;
let failures = 0;
let connected = false;

/** Whether a stream is open now (so polling can slow down). */
export function isLive(): boolean {
  return connected;
}

export function startLiveStatus(listener: LiveStatusHandlers): void {
  stopLiveStatus();
  handlers = listener;
  failures = 0;
  open();
}

export function stopLiveStatus(): void {
  clearTimeout(reopenTimer);
  source?.close();
  source = null;
  handlers = null;
  connected = false;
}

function setConnected(value: boolean): void {
  if (connected === value) return;
  connected = value;
  handlers?.onConnected(value);
}

function parse(data: string): FileEvent | null {
  try {
    const value = JSON.parse(data) as Partial<FileEvent>;
    if (typeof value.fileId === "string" && typeof value.status === "string"
        && STATUSES.has(value.status) && typeof value.size === "number") {
      return value as FileEvent;
    }
  } catch {
    // not ours to act on
  }
  return null;
}

function open(): void {
  if (typeof EventSource === "undefined") return; // polling alone, as before
  const stream = new EventSource(EVENTS_PATH);
  source = stream;
  stream.addEventListener("open", () => {
    failures = 0;
    setConnected(true);
  });
  stream.addEventListener("file", (message) => {
    const event = parse((message as MessageEvent<string>).data);
    if (event && source === stream) handlers?.onEvent(event);
  });
  stream.addEventListener("error", () => {
    if (source !== stream) return;
    setConnected(false);
    // CONNECTING: the stream ended and the browser reconnects by itself. CLOSED: it gave up.
    if (stream.readyState === EventSource.CLOSED) {
      stream.close();
      source = null;
      scheduleReopen();
    }
  });
}

function scheduleReopen(): void {
  const delay = REOPEN_DELAYS_MS[Math.min(failures, REOPEN_DELAYS_MS.length - 1)];
  failures += 1;
  reopenTimer = setTimeout(() => void reopen(), delay);
}

async function reopen(): Promise<void> {
  if (!handlers) return;
  try {
    // EventSource does not say why it gave up: an expired access token is refreshed here.
    if (!(await api.hasSession())) return; // signed out: the page will show the sign-in form
  } catch {
    if (handlers) scheduleReopen(); // unreachable for now
    return;
  }
  if (handlers && !source) open();
}
