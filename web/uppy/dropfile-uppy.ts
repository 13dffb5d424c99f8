/**
 * Dropfile for Uppy: the functions `@uppy/aws-s3` (5.x, multipart) calls, backed by Dropfile's
 * v2 API, so that an Uppy page uploads into Dropfile with the signed-in user's cookies.
 *
 *     import Uppy from "@uppy/core";
 *     import AwsS3 from "@uppy/aws-s3";
 *     import { dropfileUppy } from "/uppy/dropfile-uppy.js";   // served by the gateway
 *
 *     const uppy = new Uppy();
 *     uppy.use(AwsS3, dropfileUppy(uppy));
 *
 * What each of Uppy's calls does here:
 * - before the upload (an Uppy pre-processor): POST /api/v2/files starts the upload, and the
 *   server chooses its part size, which `getChunkSize` hands to Uppy (Uppy slices the file
 *   before it calls `createMultipartUpload`, so the upload must exist by then);
 * - `createMultipartUpload`: the upload started before (its id is Uppy's `key`);
 * - `signPart`: the part's checksum (SHA-256, or CRC32C where the page has no WebCrypto), then
 *   its URL, signed for that checksum (POST .../part-urls): storage refuses changed bytes;
 * - each stored part (Uppy's `s3-multipart:part-uploaded`) is recorded in batches
 *   (POST .../parts/batch, the web app's part-records.ts);
 * - `listParts` (resume, after a pause or a retry): GET .../upload, the parts storage holds;
 * - `completeMultipartUpload`: every part recorded, then POST .../complete; the file turns
 *   UPLOADED once storage confirms it;
 * - `abortMultipartUpload` (a cancel, a removed file): the upload is aborted and its file
 *   deleted, so storage keeps nothing.
 *
 * Calls go to the page's own origin (`/api/...`, cookies included: they are SameSite=Strict,
 * so the page must be served from the gateway's site); an expired access token is refreshed
 * once, and calls failing in a way time may lift are retried (the web app's retry.ts).
 */
import type {
  AwsS3Part, AwsS3UploadParameters, UploadResult, UploadResultWithSignal,
} from "@uppy/aws-s3";
import type { Body, Meta, Uppy, UppyFile } from "@uppy/core";

import * as api from "../src/api";
import { type ChecksumAlgorithm, partChecksum, preferredAlgorithm } from "../src/checksum";
import { newFileId } from "../src/ids";
import { PartRecords } from "../src/part-records";
import { isTransient, withRetries } from "../src/retry";

export type { ChecksumAlgorithm };

export interface DropfileUppyOptions {
  /** The part checksum new uploads use (default: SHA-256 where the page has WebCrypto). */
  checksumAlgorithm?: ChecksumAlgorithm;
}

/** What `upload-success` carries in `response.body`. */
export interface DropfileUploadResult {
  /** The file's id in Dropfile (GET /api/v2/files/{fileId}). */
  fileId: string;
  location: string;
}

/** The file as these functions need it: any Uppy file will do. */
type FileRef = Pick<UppyFile<Meta, Body>, "id">;

/** The options given to `uppy.use(AwsS3, ...)`: multipart mode, with every function it calls
 * (the signatures of @uppy/aws-s3 5.x's own type definitions). */
export interface DropfileS3Options {
  shouldUseMultipart: true;
  getChunkSize: (file: { size: number }) => number;
  createMultipartUpload: (file: FileRef) => Promise<UploadResult>;
  signPart: (file: FileRef, options: {
    uploadId: string; key: string; partNumber: number; body: Blob; signal?: AbortSignal;
  }) => Promise<AwsS3UploadParameters>;
  listParts: (file: FileRef, options: UploadResultWithSignal) => Promise<AwsS3Part[]>;
  completeMultipartUpload: (file: FileRef, options: {
    uploadId: string; key: string; parts: AwsS3Part[]; signal: AbortSignal;
  }) => Promise<DropfileUploadResult>;
  abortMultipartUpload: (file: FileRef, options: UploadResultWithSignal) => Promise<void>;
}

/** Whether the browser holds a Dropfile session (refreshed if need be). */
export function isSignedIn(): Promise<boolean> {
  return api.hasSession();
}

/** One file's upload in Dropfile. */
interface Upload {
  fileId: string;
  uploadId: string;
  size: number;
  partSize: number;
  partCount: number;
  algorithm: ChecksumAlgorithm;
  data: Blob;
  /** The checksum each part's URL was signed for. */
  checksums: Map<number, string>;
  /** The ETags of the parts stored from this page. */
  etags: Map<number, string>;
  /** Parts storage holds (found by listParts) whose checksum the server does not know. */
  checksumUnknown: Set<number>;
  records: PartRecords;
  /** Aborted once the upload is discarded: its records stop. */
  stop: AbortController;
  completed: boolean;
  discarded: Promise<void> | null;
}

/** The pre-processor's outcome for one Uppy file. */
type Prepared = { upload: Upload } | { failure: unknown };

/** Uppy's pause and cancel abort its signal; calls without one run until they end. */
const NEVER = new AbortController().signal;

/**
 * The options for `uppy.use(AwsS3, dropfileUppy(uppy))`. Registers a pre-processor (which
 * starts each file's upload in Dropfile) and listeners (recording stored parts, discarding the
 * uploads of removed files) on `uppy`.
 */
export function dropfileUppy<M extends Meta, B extends Body>(
  uppy: Uppy<M, B>, options: DropfileUppyOptions = {},
): DropfileS3Options {
  const prepared = new Map<string, Prepared>(); // by Uppy's file id
  const byData = new WeakMap<Blob, Upload>(); // getChunkSize sees only the file's data
  const byKey = new Map<string, Upload>(); // Uppy's `key` is Dropfile's file id

  const log = (message: string, error?: unknown) =>
    uppy.log(`[Dropfile] ${message}${error === undefined ? "" : `: ${api.messageOf(error)}`}`,
             error === undefined ? undefined : "warning");

  function newRecords(fileId: string, stop: AbortController): PartRecords {
    // A failed record stops nothing here: completion records every part again (resending a
    // record is safe) and fails with the refusal if it stands.
    return new PartRecords(fileId, stop.signal,
                           (error) => log(`recording parts of ${fileId} failed`, error));
  }

  async function start(file: UppyFile<M, B>, data: Blob): Promise<Upload> {
    const fileId = newFileId();
    const name = typeof file.meta.name === "string" && file.meta.name ? file.meta.name : file.name;
    const layout = await withRetries(() => api.createUpload(
      { fileId, name: name ?? "upload", type: file.type ?? "", size: data.size },
      options.checksumAlgorithm ?? preferredAlgorithm(),
    ), {
      signal: NEVER,
      // Too many uploads in progress (429): only this file's upload fails (Uppy's Retry sends
      // it later); waiting here would hold back every file of the batch.
      retryable: (error) =>
        isTransient(error) && !(error instanceof api.ApiError && error.status === 429),
    }).catch(async (error: unknown) => {
      // A creation whose answer was lost and was retried is refused (the id is taken).
      if (!(error instanceof api.ApiError && error.status === 409)) throw error;
      const state = await api.uploadState(fileId);
      if (state.state !== "RECEIVING_PARTS" || !state.checksumAlgorithm) throw error;
      return { ...state, fileId, checksumAlgorithm: state.checksumAlgorithm };
    });
    const stop = new AbortController();
    return {
      fileId, uploadId: layout.uploadId, size: data.size, partSize: layout.partSize,
      partCount: layout.partCount, algorithm: layout.checksumAlgorithm, data,
      checksums: new Map(), etags: new Map(), checksumUnknown: new Set(),
      records: newRecords(fileId, stop), stop, completed: false, discarded: null,
    };
  }

  /** Aborts the upload and deletes its file (once, however many ask). */
  function discard(upload: Upload): Promise<void> {
    upload.discarded ??= (async () => {
      upload.stop.abort();
      try {
        await withRetries(() => api.abortUpload(upload.fileId, upload.uploadId), { signal: NEVER });
      } catch (error) {
        // Already aborted, or completed meanwhile: deleting the file removes what is left.
        log(`aborting ${upload.fileId}`, error);
      }
      await withRetries(() => api.deleteFile(upload.fileId), { signal: NEVER });
      log(`upload ${upload.fileId} cancelled: its parts and file are deleted`);
    })();
    return upload.discarded;
  }

  /** The pre-processor: starts the upload of every file about to go (not of retried ones
   * whose upload exists). A failure is kept, and thrown by createMultipartUpload, so that
   * Uppy reports it for that file alone. */
  uppy.addPreProcessor(async (fileIDs: string[]) => {
    await Promise.all(fileIDs.map(async (id) => {
      const file = uppy.getFile(id);
      if (!file || file.isRemote || !file.data || file.progress.uploadComplete) return;
      const known = prepared.get(id);
      if (known && "upload" in known && !known.upload.discarded) return;
      try {
        const upload = await start(file, file.data);
        byKey.set(upload.fileId, upload);
        byData.set(file.data, upload);
        prepared.set(id, { upload });
        if (!uppy.getFile(id)) void discard(upload).catch((error) => log("discarding", error));
      } catch (failure) {
        prepared.set(id, { failure });
      }
    }));
  });

  uppy.on("s3-multipart:part-uploaded", (file, part) => {
    const upload = file.data instanceof Blob ? byData.get(file.data) : undefined;
    const checksum = upload?.checksums.get(part.PartNumber);
    if (!upload || checksum === undefined) return;
    upload.etags.set(part.PartNumber, part.ETag);
    upload.records.add({ partNumber: part.PartNumber, size: partSize(upload, part.PartNumber),
                         etag: part.ETag, checksum });
  });

  // A file removed before Uppy asked for its upload (its createMultipartUpload never ran,
  // so Uppy does not call abortMultipartUpload): its upload is discarded here.
  uppy.on("file-removed", (file) => {
    const known = prepared.get(file.id);
    prepared.delete(file.id);
    if (known && "upload" in known && !known.upload.completed) {
      void discard(known.upload).catch((error) => log("discarding", error));
    }
  });

  function uploadOf(key: string, uploadId?: string): Upload {
    const upload = byKey.get(key);
    if (!upload) throw new Error(`Dropfile knows no upload ${key} on this page`);
    if (uploadId !== undefined && upload.uploadId !== uploadId) {
      throw new Error(`upload ${uploadId} is not file ${key}'s`);
    }
    return upload;
  }

  function partSize(upload: Upload, partNumber: number): number {
    return partNumber < upload.partCount
      ? upload.partSize : upload.size - upload.partSize * (upload.partCount - 1);
  }

  function partBytes(upload: Upload, partNumber: number): Blob {
    const start = (partNumber - 1) * upload.partSize;
    return upload.data.slice(start, start + partSize(upload, partNumber));
  }

  /** Every part of a completed upload recorded, with its checksum. */
  async function recordAll(upload: Upload, parts: AwsS3Part[]): Promise<void> {
    const checksum = async (number: number) =>
      upload.checksums.get(number)
        ?? await partChecksum(partBytes(upload, number), upload.algorithm);
    const etags = new Map(parts.map((part) => [part.PartNumber, part.ETag ?? ""]));
    for (const number of upload.checksumUnknown) {
      upload.records.add({ partNumber: number, size: partSize(upload, number),
                           etag: etags.get(number) ?? "", checksum: await checksum(number) });
    }
    upload.checksumUnknown.clear();
    try {
      await upload.records.flush();
    } catch {
      upload.records = newRecords(upload.fileId, upload.stop);
      for (const part of parts) {
        const number = part.PartNumber ?? 0;
        upload.records.add({ partNumber: number, size: partSize(upload, number),
                             etag: part.ETag ?? "", checksum: await checksum(number) });
      }
      await upload.records.flush();
    }
  }

  return {
    shouldUseMultipart: true,

    getChunkSize(file) {
      // Uppy slices the file before it creates the upload: the pre-processor asked first.
      const upload = file instanceof Blob ? byData.get(file) : undefined;
      return upload?.partSize ?? file.size;
    },

    async createMultipartUpload(file) {
      const known = prepared.get(file.id);
      if (!known) throw new Error("this file's upload was not started in Dropfile");
      if ("failure" in known) {
        prepared.delete(file.id); // a retry starts it again
        throw known.failure;
      }
      return { uploadId: known.upload.uploadId, key: known.upload.fileId };
    },

    async signPart(_file, { uploadId, key, partNumber, body, signal }) {
      const upload = uploadOf(key, uploadId);
      const expected = partSize(upload, partNumber);
      if (partNumber > upload.partCount || body.size !== expected) {
        throw new Error(`part ${partNumber} is ${body.size} bytes; Dropfile expects ${expected} `
          + `(parts of ${upload.partSize}): is getChunkSize given to Uppy?`);
      }
      const checksum = await partChecksum(body, upload.algorithm);
      upload.checksums.set(partNumber, checksum);
      const targets = await withRetries(() => api.partUrls(key, partNumber, partNumber, [checksum]),
                                        { signal: signal ?? NEVER });
      const target = targets.get(partNumber);
      if (!target) throw new Error(`Dropfile sent no upload link for part ${partNumber}`);
      // The checksum header is signed into the URL: the PUT must send it as it is.
      return { method: "PUT", url: target.url, headers: target.headers };
    },

    async listParts(_file, { uploadId, key, signal }) {
      const upload = uploadOf(key, uploadId);
      const state = await withRetries(() => api.uploadState(key), { signal: signal ?? NEVER });
      if (state.uploadId !== upload.uploadId) {
        throw new Error(`upload ${key} was started again elsewhere`);
      }
      if (upload.completed || state.state === "COMPLETED" || state.state === "UPLOADED") {
        // Completed, but Uppy did not hear it (paused while completing): every part is
        // stored, and completing again succeeds at once.
        return Array.from({ length: upload.partCount }, (_, index) => ({
          PartNumber: index + 1, Size: partSize(upload, index + 1),
          ETag: upload.etags.get(index + 1) ?? "",
        }));
      }
      for (const part of state.storedParts) {
        if (!part.checksum) upload.checksumUnknown.add(part.partNumber);
      }
      return state.storedParts.map((part) => ({
        PartNumber: part.partNumber, Size: part.size, ETag: part.etag,
      }));
    },

    async completeMultipartUpload(_file, { uploadId, key, parts, signal }) {
      const upload = uploadOf(key, uploadId);
      await recordAll(upload, parts);
      // A retry of a completion that succeeded succeeds too.
      await withRetries(() => api.completeUpload(key, uploadId), { signal });
      upload.completed = true;
      return { fileId: key, location: `/api/v2/files/${encodeURIComponent(key)}` };
    },

    async abortMultipartUpload(_file, { uploadId, key }) {
      await discard(uploadOf(key, uploadId));
    },
  };
}
