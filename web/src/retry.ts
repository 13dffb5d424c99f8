/**
 * The page's one retry policy, for every call of an upload (create, part URLs, part PUTs,
 * records, complete): a server's bad moment (a database restart, a deploy, throttling, a
 * dropped connection, a timeout) must not cost the user the parts already sent. Exponential
 * backoff with full jitter, so that parts and tabs which failed together spread out; never
 * sooner than the server's Retry-After; bounded by tries and by time per call.
 */

export function abortError(): DOMException {
  return new DOMException("The operation was cancelled", "AbortError");
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError());
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Tries of one call, the first included. */
export const MAX_ATTEMPTS = 30;
/** How long one call keeps being retried: long enough to outlast a database restart. */
export const RETRY_DEADLINE_MS = 120_000;

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;

/** Anything from nothing up to 0.5 s, 1 s, 2 s, ... 10 s ("full jitter"), but at least the
 * server's Retry-After. */
export function backoffDelay(attempt: number, retryAfterMs?: number | null): number {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
  return Math.max(Math.random() * ceiling, retryAfterMs ?? 0);
}

/** Retry-After in milliseconds: a number of seconds or an HTTP date; null when absent. */
export function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

/** A failure that may pass: retried, and an upload it stops is kept for a resume. */
export interface TransientFailure {
  readonly transient: boolean;
  readonly retryAfterMs?: number | null;
}

export function isTransient(error: unknown): boolean {
  return typeof error === "object" && error !== null
    && (error as Partial<TransientFailure>).transient === true;
}

export interface RetryOptions {
  signal: AbortSignal;
  /** Which failures to retry (default: the transient ones). */
  retryable?(error: unknown): boolean;
  /** Runs after the backoff, before the next attempt (for example to renew a URL). */
  beforeRetry?(error: unknown, attempt: number): Promise<void> | void;
  /** Overrides of the policy (tests of the policy itself). */
  attempts?: number;
  deadlineMs?: number;
}

export async function withRetries<T>(task: () => Promise<T>, options: RetryOptions): Promise<T> {
  const attempts = options.attempts ?? MAX_ATTEMPTS;
  const deadline = performance.now() + (options.deadlineMs ?? RETRY_DEADLINE_MS);
  const retryable = options.retryable ?? isTransient;
  for (let attempt = 1; ; attempt++) {
    try {
      return await task();
    } catch (error) {
      if (options.signal.aborted) throw abortError();
      const left = deadline - performance.now();
      if (attempt >= attempts || left <= 0 || !retryable(error)) throw error;
      const retryAfter = (error as Partial<TransientFailure>)?.retryAfterMs;
      await sleep(Math.min(backoffDelay(attempt, retryAfter), left), options.signal);
      await options.beforeRetry?.(error, attempt);
    }
  }
}
