/**
 * One HTTP exchange with bounded retries: a per-attempt timeout, `Retry-After` honoured, backoff
 * with full jitter otherwise, and a deadline after which no retry starts.
 */
import { CourseBundlesError, NetworkError, errorFromResponse } from "./errors.js";

export interface RetryPolicy {
  /** Retries after the first attempt (0: never retry). */
  readonly maxRetries: number;
  /** No retry is started once it would begin later than this many ms after the first attempt. */
  readonly deadlineMs: number;
  /** Backoff without `Retry-After`: a random wait up to `baseDelayMs * 2^retry`, capped below. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** What the client needs from its environment; tests replace it. */
export interface Runtime {
  readonly fetch: typeof fetch;
  readonly sleep: (ms: number) => Promise<void>;
  readonly random: () => number;
  readonly now: () => number;
}

export const defaultRuntime: Runtime = {
  fetch: (input, init) => globalThis.fetch(input, init),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
  now: Date.now,
};

export interface Exchange {
  readonly method: "GET" | "POST" | "DELETE";
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly timeoutMs: number;
  readonly policy: RetryPolicy;
  /** Statuses worth another attempt; network errors and timeouts always are. */
  readonly retryOn: ReadonlySet<number>;
  /** Called before each retry (for logs and tests). */
  readonly onRetry?: ((error: CourseBundlesError, delayMs: number, retry: number) => void) | undefined;
}

/** The first answer that is 2xx or 304; otherwise the typed error of the last attempt. */
export async function exchange(runtime: Runtime, ex: Exchange): Promise<Response> {
  const started = runtime.now();
  for (let retry = 0; ; retry++) {
    const error = await attempt(runtime, ex);
    if (error instanceof Response) return error;
    const retryable = error.status === 0 || ex.retryOn.has(error.status);
    if (!retryable || retry >= ex.policy.maxRetries) throw error;
    const delayMs = retryDelay(retry, error.retryAfterMs, ex.policy, runtime.random);
    if (runtime.now() - started + delayMs > ex.policy.deadlineMs) throw error;
    ex.onRetry?.(error, delayMs, retry + 1);
    await runtime.sleep(delayMs);
  }
}

async function attempt(runtime: Runtime, ex: Exchange): Promise<Response | CourseBundlesError> {
  let response: Response;
  try {
    const init: RequestInit = {
      method: ex.method,
      headers: ex.headers,
      signal: AbortSignal.timeout(ex.timeoutMs),
    };
    if (ex.body !== undefined) init.body = ex.body;
    response = await runtime.fetch(ex.url, init);
  } catch (cause) {
    const timedOut = cause instanceof Error && cause.name === "TimeoutError";
    const what = timedOut ? `no answer within ${ex.timeoutMs} ms` : "the request failed";
    return new NetworkError(`${ex.method} ${ex.url}: ${what}`, { status: 0, url: ex.url, cause });
  }
  if (response.ok || response.status === 304) return response;
  return errorFromResponse(response, ex.url);
}

/** `Retry-After` when given (never earlier, up to 10% later to spread callers), else full jitter. */
export function retryDelay(
  retry: number,
  retryAfterMs: number | undefined,
  policy: RetryPolicy,
  random: () => number,
): number {
  if (retryAfterMs !== undefined) return Math.round(retryAfterMs * (1 + 0.1 * random()));
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.round(random() * ceiling);
}
