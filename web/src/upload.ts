/**
 * One file's multipart upload through the v2 API: start it (POST /api/v2/files; the server
 * chooses the part size), then for each part compute its checksum and ask for its URL (signed
 * for that checksum, so storage refuses bytes that changed on the way) a few parts ahead, in
 * batches (part-pipeline.ts), PUT it straight to storage four at a time; record the stored
 * parts in batches (part-records.ts); then complete. Storage confirms the object later; the file list shows that as the status
 * turning UPLOADED.
 *
 * A file picked again after a reload (same name, size and modification time) resumes its
 * upload: the parts storage already holds are not sent again (resume.ts remembers the id).
 *
 * Every call of the upload is retried while it fails in a way time may lift (retry.ts: server
 * errors, throttling, dropped connections, timeouts); a failed part PUT gets a fresh URL each
 * time (the old one may have expired). When the retries run out the upload is kept, not
 * aborted: picking the same file again resumes it. Only a refusal no retry can change aborts
 * it, and a server saying the upload is gone (404) ends it. Cancelling stops the transfers,
 * aborts the upload on the server (abort-upload) and deletes the file's record, so nothing
 * is left.
 */
import * as api from "./api";
import { messageOf } from "./api";
import { type ChecksumAlgorithm, partChecksum, preferredAlgorithm } from "./checksum";
import { ALREADY_EXISTS, NOT_FOUND } from "./codes";
import { PartPipeline, type ReadyPart } from "./part-pipeline";
import { PartRecords } from "./part-records";
import { forgetUpload, recordUpload, recordedFileId } from "./resume";
import { newFileId } from "./ids";
import { isTransient, withRetries } from "./retry";
import { PartError, Slots, putPart } from "./transfer";

const PARTS_IN_PARALLEL = 4;
const SPEED_WINDOW_MS = 3_000;

// Shared by every upload on the page: one file goes four parts at a time, several share six
// (a browser's connections per host).
const storageSlots = new Slots(6);

export type UploadPhase =
  | "starting" | "uploading" | "finishing" | "done" | "failed" | "cancelling" | "cancelled";

/** What the upload works with once started or resumed. */
interface Layout {
  uploadId: string;
  partSize: number;
  partCount: number;
  algorithm: ChecksumAlgorithm;
  /** ETags of the parts storage already holds, by part number. */
  stored: Map<number, string>;
  /** Of those, the parts whose checksum the server does not know (stored, never recorded,
   * in a store whose part listing leaves checksums out): completion needs them recorded. */
  checksumUnknown: number[];
}

// File ids this page is uploading now: picking a file twice does not resume it twice.
const inProgress = new Set<string>();

export class Upload {
  /** The id of the upload this file started before (to resume), or a new one. */
  readonly fileId: string;
  phase: UploadPhase = "starting";
  /** Why the upload failed, in words. */
  error = "";
  /** What is happening now that the user may want to know (a retry). */
  note = "";

  private readonly resuming: boolean;
  private uploadId = "";
  private layout: Layout | null = null;
  private loaded: number[] = [];
  private samples: { at: number; bytes: number }[] = [];
  private readonly stop = new AbortController();
  private finished: Promise<void> | null = null;

  /** `changed` is told of every change; `progressOnly` when only the bytes sent moved (many
   * times a second), which a view may draw less often than phase changes. */
  constructor(readonly file: File,
              private readonly changed: (upload: Upload, progressOnly: boolean) => void) {
    const recorded = recordedFileId(file);
    this.resuming = recorded !== null && !inProgress.has(recorded);
    this.fileId = this.resuming ? recorded! : newFileId();
    inProgress.add(this.fileId);
  }

  get active(): boolean {
    return ["starting", "uploading", "finishing", "cancelling"].includes(this.phase);
  }

  get cancellable(): boolean {
    return this.phase === "starting" || this.phase === "uploading";
  }

  /** Bytes sent to storage so far (parts in flight, and parts stored before, included). */
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
    this.finished ??= this.run().finally(() => inProgress.delete(this.fileId));
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
      const layout = (this.resuming ? await this.resume() : null) ?? await this.begin();
      if (layout === "complete") {
        forgetUpload(this.file);
        this.setPhase("done");
        return;
      }
      this.layout = layout;
      this.uploadId = layout.uploadId;
      this.loaded = Array.from({ length: layout.partCount },
                               (_, index) => layout.stored.has(index + 1) ? this.partBytes(index).size : 0);
      this.throwIfStopped();
      this.setPhase("uploading");
      await this.sendParts();
      this.throwIfStopped();
      this.setPhase("finishing");
      // A retry of a completion that succeeded succeeds too.
      await withRetries(() => api.completeUpload(this.fileId, this.uploadId),
                        { signal: this.stop.signal });
      forgetUpload(this.file);
      this.setPhase("done");
    } catch (error) {
      if (this.phase === "cancelling") {
        await this.removeFromServer();
      } else {
        this.stop.abort();
        this.error = messageOf(error);
        if (isTransient(error)) {
          // The server had a bad moment longer than the retries: the stored parts stay.
          this.error += ". The upload was kept: pick the same file again to resume it.";
        } else if (error instanceof api.ApiError && error.code === NOT_FOUND) {
          forgetUpload(this.file); // the server says the upload is gone: nothing to keep
        } else {
          await this.abandon();
        }
        this.setPhase("failed");
      }
    }
  }

  /** A new upload under this file id, remembered for a resume (after a reload, or after a
   * creation whose answer was lost: its retry is refused ALREADY_EXISTS, the id being taken). */
  private async begin(): Promise<Layout> {
    recordUpload(this.file, this.fileId);
    let started: api.UploadLayout;
    try {
      started = await withRetries(() => api.createUpload({
        fileId: this.fileId, name: this.file.name, type: this.file.type, size: this.file.size,
      }, preferredAlgorithm()), { signal: this.stop.signal });
    } catch (error) {
      if (error instanceof api.ApiError && error.code === ALREADY_EXISTS) {
        const resumed = await this.resume();
        if (resumed !== null && resumed !== "complete") return resumed;
      }
      if (!isTransient(error)) forgetUpload(this.file);
      throw error;
    }
    return { uploadId: started.uploadId, partSize: started.partSize, partCount: started.partCount,
             algorithm: started.checksumAlgorithm, stored: new Map(), checksumUnknown: [] };
  }

  /** The upload this file started before, with the parts storage holds; null when it cannot
   * be continued (then a new upload starts under the same id, which is freed first). */
  private async resume(): Promise<Layout | "complete" | null> {
    let state: api.UploadState;
    try {
      state = await withRetries(() => api.uploadState(this.fileId), { signal: this.stop.signal });
    } catch (error) {
      if (error instanceof api.ApiError && error.code === NOT_FOUND) {
        forgetUpload(this.file);
        return null; // gone: its id is free again
      }
      throw error;
    }
    if (state.file.size !== this.file.size) throw new Error("the file changed since its upload began");
    if (state.state === "COMPLETED" || state.state === "UPLOADED") return "complete";
    if (state.state !== "RECEIVING_PARTS" || !state.checksumAlgorithm) {
      // Aborted elsewhere (or a v1 upload): its leftover holds nothing; start it again.
      await api.deleteFile(this.fileId);
      forgetUpload(this.file);
      return null;
    }
    return { uploadId: state.uploadId, partSize: state.partSize, partCount: state.partCount,
             algorithm: state.checksumAlgorithm,
             stored: new Map(state.storedParts.map((part) => [part.partNumber, part.etag])),
             checksumUnknown: state.storedParts.filter((part) => !part.checksum)
               .map((part) => part.partNumber) };
  }

  private throwIfStopped(): void {
    this.stop.signal.throwIfAborted();
  }

  private partBytes(index: number): Blob {
    const size = this.layout?.partSize ?? this.file.size;
    const start = index * size;
    return this.file.slice(start, Math.min(start + size, this.file.size));
  }

  /** Every part not stored yet, PARTS_IN_PARALLEL at a time, each recorded once stored;
   * the first failure (of a part, its URL or its record) stops the rest. */
  private async sendParts(): Promise<void> {
    const layout = this.layout!;
    const todo = Array.from({ length: layout.partCount }, (_, index) => index)
      .filter((index) => !layout.stored.has(index + 1));
    let failure: unknown = null;
    const fail = (error: unknown) => {
      failure ??= error;
      this.stop.abort();
    };
    const records = new PartRecords(this.fileId, this.stop.signal, fail);
    try {
      await this.recordChecksums(layout, records);
    } catch (error) {
      fail(error);
    }
    const pipeline = new PartPipeline(this.fileId, todo, (index) => this.partBytes(index),
                                      layout.algorithm, this.stop.signal, fail);
    const worker = async () => {
      while (!this.stop.signal.aborted) {
        let part: ReadyPart | null;
        try {
          part = await pipeline.next();
        } catch (error) {
          fail(error);
          return;
        }
        if (part === null) return;
        try {
          await this.sendPart(part, records);
        } catch (error) {
          fail(error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARTS_IN_PARALLEL, todo.length) }, worker));
    if (failure === null) {
      await records.flush().catch(fail);
    }
    if (failure !== null) throw failure;
  }

  /** Resumed parts storage holds with a checksum the server lacks: recorded with theirs. */
  private async recordChecksums(layout: Layout, records: PartRecords): Promise<void> {
    for (const number of layout.checksumUnknown) {
      this.throwIfStopped();
      const bytes = this.partBytes(number - 1);
      records.add({ partNumber: number, size: bytes.size, etag: layout.stored.get(number)!,
                    checksum: await partChecksum(bytes, layout.algorithm) });
    }
  }

  private async sendPart(part: ReadyPart, records: PartRecords): Promise<void> {
    const { index, number, bytes, checksum } = part;
    const signal = this.stop.signal;
    let target = part.target;
    const etag = await withRetries(async () => {
      const release = await storageSlots.acquire(signal);
      try {
        return await putPart(target.url, bytes, (sent) => this.progress(index, sent), signal,
                             target.headers);
      } finally {
        release();
      }
    }, {
      signal,
      retryable: (error) => error instanceof PartError && error.retryable,
      beforeRetry: async (error, attempt) => {
        this.progress(index, 0);
        this.setNote(`Part ${number} failed (${messageOf(error)}); retrying, attempt ${attempt + 1}…`);
        target = await this.renewTarget(number, checksum, target, error);
      },
    });
    this.progress(index, bytes.size);
    records.add({ partNumber: number, size: bytes.size, etag, checksum });
    if (this.note) this.setNote("");
  }

  /** A part's presigned URL on its own, for a retry (the pipeline asks for them in runs). */
  private async partTarget(number: number, checksum: string): Promise<api.PartTarget> {
    const target = (await withRetries(() => api.partUrls(this.fileId, number, number, [checksum]),
                                      { signal: this.stop.signal })).get(number);
    if (!target) throw new Error(`the server sent no upload link for part ${number}`);
    return target;
  }

  /** A fresh presigned URL for a part about to be retried. A 403 usually means the URL
   * expired, so then a fresh one is required; after other failures it is only a precaution
   * (storage's error answers may lack CORS headers, so the page cannot always see a 403). */
  private async renewTarget(number: number, checksum: string, current: api.PartTarget,
                            error: unknown): Promise<api.PartTarget> {
    try {
      return await this.partTarget(number, checksum);
    } catch (renewal) {
      if (error instanceof PartError && error.status === 403) {
        throw new Error(`the upload link of part ${number} expired and could not be renewed `
          + `(${messageOf(renewal)})`);
      }
      return current;
    }
  }

  /** After a failure: free the storage the upload holds (best effort; the failure itself
   * is what the user needs to read). The file stays listed as FAILED until deleted. */
  private async abandon(): Promise<void> {
    if (!this.uploadId) return;
    try {
      await api.abortUpload(this.fileId, this.uploadId);
      forgetUpload(this.file);
    } catch {
      // already complete, or the server is unreachable: picking the file again resumes it
    }
  }

  /** After a cancel: abort the multipart upload and delete the file's record. */
  private async removeFromServer(): Promise<void> {
    try {
      if (this.uploadId) {
        await api.abortUpload(this.fileId, this.uploadId);
        await api.deleteFile(this.fileId);
      }
      forgetUpload(this.file);
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
    this.changed(this, true);
  }

  private setPhase(phase: UploadPhase): void {
    this.phase = phase;
    if (phase !== "uploading") this.note = "";
    this.changed(this, false);
  }

  private setNote(note: string): void {
    this.note = note;
    this.changed(this, false);
  }
}
