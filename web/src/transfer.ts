/**
 * Moving part bytes straight to storage: one PUT per part to its presigned URL, with
 * XMLHttpRequest because fetch cannot report upload progress. Storage's answer carries the
 * part's ETag (the bucket's CORS rule exposes it), which completing the upload needs.
 */
import { abortError, parseRetryAfter, type TransientFailure } from "./retry";

/** A PUT that has not been answered after this long is given up (and retried). */
const PUT_TIMEOUT_MS = 120_000;

export class PartError extends Error implements TransientFailure {
  constructor(message: string, readonly status: number,
              readonly retryAfterMs: number | null = null) {
    super(message);
    this.name = "PartError";
  }

  /** No answer (status 0: unreachable, dropped, timed out), throttling or a storage fault. */
  get transient(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }

  /** Worth another try: a transient failure, or an expired URL (403, renewed first). */
  get retryable(): boolean {
    return this.transient || this.status === 403;
  }
}

export function putPart(url: string, body: Blob, onProgress: (loaded: number) => void,
                        signal: AbortSignal, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError());
    const xhr = new XMLHttpRequest();
    const cancel = () => xhr.abort();
    const settle = () => signal.removeEventListener("abort", cancel);
    xhr.open("PUT", url);
    xhr.timeout = PUT_TIMEOUT_MS;
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    // The part's checksum, signed into the URL: storage checks the bytes against it.
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      settle();
      if (xhr.status < 200 || xhr.status > 299) {
        reject(new PartError(`storage refused the part (HTTP ${xhr.status})`, xhr.status,
                             parseRetryAfter(xhr.getResponseHeader("Retry-After"))));
        return;
      }
      const etag = xhr.getResponseHeader("ETag");
      if (etag) resolve(etag);
      else reject(new PartError("storage did not reveal the part's ETag (the bucket's CORS "
        + "rule must expose ETag)", xhr.status));
    };
    xhr.onerror = () => {
      settle();
      reject(new PartError("the connection to storage failed", 0));
    };
    xhr.ontimeout = () => {
      settle();
      reject(new PartError("storage did not answer in time", 0));
    };
    xhr.onabort = () => {
      settle();
      reject(abortError());
    };
    signal.addEventListener("abort", cancel, { once: true });
    xhr.send(body);
  });
}

/** A fixed number of slots shared by every upload, so that several files at once do not
 * open more connections to storage than the browser would serve anyway. */
export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(count: number) {
    this.free = count;
  }

  async acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) throw abortError();
    if (this.free > 0) {
      this.free--;
    } else {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          this.waiting.splice(this.waiting.indexOf(granted), 1);
          reject(abortError());
        };
        const granted = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        this.waiting.push(granted);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next(); // the slot passes straight on
      else this.free++;
    };
  }
}
