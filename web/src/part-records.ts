/**
 * Stored parts recorded in batches (POST /api/v2/files/{id}/parts/batch), as the CLI does:
 * the parts stored within RECORD_WINDOW_MS leave in one request (at most
 * MAX_PARTS_PER_RECORD), so a 1 GiB upload makes a few dozen record requests, not one per
 * part. A part's PUT never waits for its record; the rest leave at once when the upload
 * has sent every part (flush). Transient failures are retried (retry.ts); the first refusal
 * (or failure that outlasts the retries) stops the upload (`failed`), and flush() throws
 * it. Resending a batch is safe: recording a part again changes nothing.
 */
import * as api from "./api";
import { withRetries } from "./retry";

export const RECORD_WINDOW_MS = 250;
export const MAX_PARTS_PER_RECORD = 100; // the route's limit

export class PartRecords {
  private waiting: api.PartRecord[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown = null;

  constructor(private readonly fileId: string, private readonly signal: AbortSignal,
              private readonly failed: (error: unknown) => void) {}

  add(part: api.PartRecord): void {
    this.waiting.push(part);
    if (this.waiting.length >= MAX_PARTS_PER_RECORD) this.send();
    else this.timer ??= setTimeout(() => this.send(), RECORD_WINDOW_MS);
  }

  /** Sends the parts still waiting; resolves once every part added is recorded. */
  async flush(): Promise<void> {
    this.send();
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    if (this.failure !== null) throw this.failure;
  }

  private send(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.waiting.length === 0 || this.signal.aborted) return;
    const parts = this.waiting;
    this.waiting = [];
    const sending = withRetries(() => api.recordParts(this.fileId, parts), {
      signal: this.signal,
    }).then(() => undefined, (error: unknown) => {
      this.failure ??= error;
      this.failed(error);
    }).finally(() => this.inFlight.delete(sending));
    this.inFlight.add(sending);
  }
}
