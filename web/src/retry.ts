/** Retrying with exponential backoff, and sleeps that end early when the work is cancelled. */

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

/** Attempts at a request before its failure stands (a part's PUT, a URL, a record). */
export const MAX_ATTEMPTS = 6;

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8_000;

/** 0.5 s, 1 s, 2 s, ... up to 8 s, each shortened by up to half at random so that parts
 * which failed together do not all come back at the same instant. */
export function backoffDelay(attempt: number): number {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
  return ceiling * (0.5 + Math.random() / 2);
}

export interface RetryPolicy {
  attempts: number;
  signal: AbortSignal;
  retryable(error: unknown): boolean;
  /** Runs after the backoff, before the next attempt (for example to renew a URL). */
  beforeRetry?(error: unknown, attempt: number): Promise<void> | void;
}

export async function withRetries<T>(task: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await task();
    } catch (error) {
      if (policy.signal.aborted) throw abortError();
      if (attempt >= policy.attempts || !policy.retryable(error)) throw error;
      await sleep(backoffDelay(attempt), policy.signal);
      await policy.beforeRetry?.(error, attempt);
    }
  }
}
