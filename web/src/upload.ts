/**
 * One file's multipart upload, as the v1 contract has it: ask for one presigned URL per
 * 5 MiB part (get-upload-urls), PUT the parts straight to storage three at a time, record
 * each part (record-chunk), then complete. Storage confirms the object later; the file list
 * shows that as the status turning UPLOADED.
 *
 * Failed part PUTs are retried with backoff, each time with a fresh URL when the server
 * offers them (the old one may have expired). Cancelling stops the transfers, aborts the
 * upload on the server (abort-upload) and deletes the file's record, so nothing is left.
 */
import * as api from "./api";
import { messageOf } from "./api";
import { withRetries } from "./retry";
import { PartError, Slots, putPart } from "./transfer";

export const PART_SIZE = 5 * 1024 * 1024;
const PARTS_IN_PARALLEL = 3;
const MAX_ATTEMPTS = 6;
const SPEED_WINDOW_MS = 3_000;

// Shared by every upload on the page: one file goes three parts at a time, several share four.
const storageSlots = new Slots(4);

export type UploadPhase =
  | "starting" | "uploading" | "finishing" | "done" | "failed" | "cancelling" | "cancelled";

export function newFileId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID needs a secure context (HTTPS or localhost); build a v4 UUID by hand elsewhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class Upload {
  readonly fileId = newFileId();
  phase: UploadPhase = "starting";
  /** Why the upload failed, in words. */
  error = "";
  /** What is happening now that the user may want to know (a retry). */
  note = "";

  private uploadId = "";
  private urls: string[] = [];
  private loaded: number[] = [];
  private samples: { at: number; bytes: number }[] = [];
  private readonly stop = new AbortController();
  private finished: Promise<void> | null = null;

  constructor(readonly file: File, private readonly changed: (upload: Upload) => void) {}

  get active(): boolean {
    return ["starting", "uploading", "finishing", "cancelling"].includes(this.phase);
  }

  get cancellable(): boolean {
    return this.phase === "starting" || this.phase === "uploading";
  }

  /** Bytes sent to storage so far (parts in flight included). */
  get sent(): number {
    return this.loaded.reduce((sum, bytes) => sum + bytes, 0);
  }

  /** Bytes per second over the last few seconds. */
  get speed(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || last.at - first.at < 300) return 0;
    return Math.max(0, (last.bytes - first.bytes) / ((last.at - first.at) / 1000));
  }

  start(): Promise<void> {
    this.finished ??= this.run();
    return this.finished;
  }

  /** Stops the upload and removes it from the server; resolves once that is done. */
  async cancel(): Promise<void> {
    if (!this.cancellable) return;
    this.setPhase("cancelling");
    this.stop.abort();
    await this.finished;
  }

  private async run(): Promise<void> {
    try {
      const started = await api.startUpload({
        fileId: this.fileId, name: this.file.name, type: this.file.type, size: this.file.size,
      });
      this.uploadId = started.uploadId;
      this.urls = [...started.presignedUrls];
      this.loaded = this.urls.map(() => 0);
      this.throwIfStopped();
      this.setPhase("uploading");
      const etags = await this.sendParts();
      this.throwIfStopped();
      this.setPhase("finishing");
      await api.completeUpload(this.fileId, this.uploadId, etags);
      this.setPhase("done");
    } catch (error) {
      if (this.phase === "cancelling") {
        await this.removeFromServer();
      } else {
        this.stop.abort();
        this.error = messageOf(error);
        await this.abandon();
        this.setPhase("failed");
      }
    }
  }

  private throwIfStopped(): void {
    this.stop.signal.throwIfAborted();
  }

  /** Every part, PARTS_IN_PARALLEL at a time; the first failure stops the rest. */
  private async sendParts(): Promise<string[]> {
    const etags: string[] = new Array(this.urls.length);
    let next = 0;
    let failure: unknown = null;
    const worker = async () => {
      while (next < this.urls.length && !this.stop.signal.aborted) {
        const index = next++;
        try {
          etags[index] = await this.sendPart(index);
        } catch (error) {
          failure ??= error;
          this.stop.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARTS_IN_PARALLEL, this.urls.length) }, worker));
    if (failure !== null) throw failure;
    return etags;
  }

  private async sendPart(index: number): Promise<string> {
    const start = index * PART_SIZE;
    const bytes = this.file.slice(start, Math.min(start + PART_SIZE, this.file.size));
    const signal = this.stop.signal;
    const etag = await withRetries(async () => {
      const release = await storageSlots.acquire(signal);
      try {
        return await putPart(this.urls[index], bytes, (sent) => this.progress(index, sent), signal);
      } finally {
        release();
      }
    }, {
      attempts: MAX_ATTEMPTS,
      signal,
      retryable: (error) => error instanceof PartError && error.retryable,
      beforeRetry: async (error, attempt) => {
        this.progress(index, 0);
        this.setNote(`Part ${index + 1} failed (${messageOf(error)}); retrying, attempt ${attempt + 1}…`);
        await this.renewUrl(index, error);
      },
    });
    this.progress(index, bytes.size);
    await withRetries(() => api.recordPart(this.fileId, index, bytes.size, etag), {
      attempts: MAX_ATTEMPTS,
      signal,
      retryable: (error) => error instanceof api.ApiError && error.transient,
    });
    if (this.note) this.setNote("");
    return etag;
  }

  /** A fresh presigned URL for a part about to be retried. A 403 usually means the URL
   * expired, so then a fresh one is required; after other failures it is only a precaution
   * (storage's error answers may lack CORS headers, so the page cannot always see a 403). */
  private async renewUrl(index: number, error: unknown): Promise<void> {
    try {
      const fresh = await api.freshPartUrls(this.fileId, index + 1, index + 1);
      const url = fresh.get(index + 1);
      if (url) this.urls[index] = url;
    } catch (renewal) {
      if (error instanceof PartError && error.status === 403) {
        throw new Error(`the upload link of part ${index + 1} expired and could not be renewed `
          + `(${messageOf(renewal)})`);
      }
    }
  }

  /** After a failure: free the storage the upload holds (best effort; the failure itself
   * is what the user needs to read). The file stays listed as FAILED until deleted. */
  private async abandon(): Promise<void> {
    if (!this.uploadId) return;
    try {
      await api.abortUpload(this.fileId, this.uploadId);
    } catch {
      // already complete, or the server is unreachable: the upload expires on its own
    }
  }

  /** After a cancel: abort the multipart upload and delete the file's record. */
  private async removeFromServer(): Promise<void> {
    try {
      if (this.uploadId) {
        await api.abortUpload(this.fileId, this.uploadId);
        await api.deleteFile(this.fileId);
      }
      this.setPhase("cancelled");
    } catch (error) {
      this.error = `Cancelled here, but the server could not be told: ${messageOf(error)}`;
      this.setPhase("failed");
    }
  }

  private progress(index: number, sent: number): void {
    this.loaded[index] = sent;
    const now = performance.now();
    this.samples.push({ at: now, bytes: this.sent });
    while (this.samples.length > 2 && now - this.samples[0].at > SPEED_WINDOW_MS) this.samples.shift();
    this.changed(this);
  }

  private setPhase(phase: UploadPhase): void {
    this.phase = phase;
    if (phase !== "uploading") this.note = "";
    this.changed(this);
  }

  private setNote(note: string): void {
    this.note = note;
    this.changed(this);
  }
}
