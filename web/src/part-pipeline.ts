/**
 * Parts made ready ahead of their PUTs: each part's checksum computed and its presigned URL
 * asked for while earlier parts are on the wire, at most LOOKAHEAD parts ahead of the
 * senders, one part-urls request for a run of up to URL_BATCH consecutive parts. Without it
 * every part waited for its checksum and for a URL round trip of its own just before its
 * PUT: across a WAN, a round trip per part on the critical path.
 *
 * A run is sent early when a sender is waiting with nothing ready or asked for (at the start,
 * or when storage is faster than hashing), so the first PUT leaves after one checksum, not
 * eight; runs are asked for while the next parts are hashed.
 * URLs are still asked for lazily, a few parts ahead, so none waits long enough to expire.
 */
import * as api from "./api";
import { type ChecksumAlgorithm, partChecksum } from "./checksum";
import { withRetries } from "./retry";

export const URL_BATCH = 8;
export const LOOKAHEAD = 8;

export interface ReadyPart {
  /** 0-based, as the file is sliced. */
  index: number;
  /** 1-based, as storage numbers parts. */
  number: number;
  bytes: Blob;
  checksum: string;
  target: api.PartTarget;
}

export class PartPipeline {
  private readonly ready: ReadyPart[] = [];
  private senders: (() => void)[] = [];
  private room: (() => void) | null = null;
  private finished = false;
  private failure: unknown = null;
  /** Parts hashed whose URLs are being asked for. */
  private asked = 0;

  constructor(private readonly fileId: string, private readonly todo: number[],
              private readonly bytesOf: (index: number) => Blob,
              private readonly algorithm: ChecksumAlgorithm,
              private readonly signal: AbortSignal,
              private readonly failed: (error: unknown) => void) {
    signal.addEventListener("abort", () => this.wakePreparer(), { once: true });
    void this.prepare();
  }

  /** The next part to send, or null once every part has been handed out. */
  async next(): Promise<ReadyPart | null> {
    for (;;) {
      if (this.failure !== null) throw this.failure;
      const part = this.ready.shift();
      if (part) {
        this.wakePreparer();
        return part;
      }
      if (this.finished) return null;
      await new Promise<void>((resolve) => this.senders.push(resolve));
    }
  }

  private async prepare(): Promise<void> {
    const asking = new Set<Promise<void>>();
    try {
      let position = 0;
      while (position < this.todo.length) {
        while (this.ready.length + this.asked >= LOOKAHEAD) {
          this.throwIfStopped();
          await new Promise<void>((resolve) => { this.room = resolve; });
        }
        const run: Omit<ReadyPart, "target">[] = [];
        do {
          this.throwIfStopped();
          const index = this.todo[position++];
          const bytes = this.bytesOf(index);
          run.push({ index, number: index + 1, bytes,
                     checksum: await partChecksum(bytes, this.algorithm) });
        } while (run.length < URL_BATCH && position < this.todo.length
                 && this.todo[position] === run[run.length - 1].index + 1
                 && !this.starving());
        // Not awaited: the next parts are hashed while their URLs are on the way.
        const request = this.askUrls(run).finally(() => asking.delete(request));
        asking.add(request);
      }
      while (asking.size > 0) await Promise.all(asking);
      this.throwIfStopped();
    } catch (error) {
      this.fail(error);
    } finally {
      this.finished = true;
      this.wakeSenders();
    }
  }

  /** More senders wait than parts are ready or on their way: send the run as it is. */
  private starving(): boolean {
    return this.ready.length + this.asked < this.senders.length;
  }

  private async askUrls(run: Omit<ReadyPart, "target">[]): Promise<void> {
    this.asked += run.length;
    try {
      const first = run[0].number;
      const last = run[run.length - 1].number;
      const targets = await withRetries(
        () => api.partUrls(this.fileId, first, last, run.map((part) => part.checksum)),
        { signal: this.signal });
      for (const part of run) {
        const target = targets.get(part.number);
        if (!target) throw new Error(`the server sent no upload link for part ${part.number}`);
        this.ready.push({ ...part, target });
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.asked -= run.length;
      this.wakeSenders();
    }
  }

  private throwIfStopped(): void {
    if (this.failure !== null) throw this.failure;
    this.signal.throwIfAborted();
  }

  private fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.failed(error);
    this.wakePreparer();
  }

  private wakeSenders(): void {
    const waiting = this.senders;
    this.senders = [];
    for (const wake of waiting) wake();
  }

  private wakePreparer(): void {
    const wake = this.room;
    this.room = null;
    wake?.();
  }
}
