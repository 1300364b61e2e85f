/**
 * `publishEvents`: check each event, send the valid ones in batches within the intake's limits,
 * retry a batch that was not taken (same body, same ids: the server deduplicates), and report
 * every event's fate. A `422` is never retried.
 */
import { CourseBundlesError, InvalidRequest } from "./errors.js";
import { eventProblems, type CourseEvent } from "./events.js";
import { exchange, type RetryPolicy, type Runtime } from "./transport.js";

export interface PublishLimits {
  /** Most events per request (the intake's `CB_EVENT_MAX_BATCH`, 1,000). */
  readonly maxBatch: number;
  /** Most body bytes per request (the API's `CB_API_MAX_BODY_BYTES`, 4 MiB). */
  readonly maxBodyBytes: number;
}

export const DEFAULT_PUBLISH_LIMITS: PublishLimits = { maxBatch: 1000, maxBodyBytes: 4 * 1024 * 1024 };

export const DEFAULT_EVENTS_RETRY: RetryPolicy = {
  maxRetries: 6,
  deadlineMs: 60_000,
  baseDelayMs: 200,
  maxDelayMs: 5_000,
};

/** Not taken, worth sending again: broker or backlog (503), rate (429), proxies (502, 504). */
const RETRY_ON: ReadonlySet<number> = new Set([429, 502, 503, 504]);

export interface RefusedEvent {
  /** Position in the array given to `publishEvents`. */
  readonly index: number;
  readonly id: string;
  readonly reasons: readonly string[];
  /** `client`: never sent; `server`: the intake's 422 named it. */
  readonly by: "client" | "server";
}

export interface FailedEvent {
  readonly index: number;
  readonly id: string;
  /** Why it was not taken: the last attempt's error, or the 422 of a batch another event broke. */
  readonly error: CourseBundlesError;
}

export interface PublishReport {
  /** Every event was taken (new or already seen). */
  readonly ok: boolean;
  /** Events the server put on the broker now. */
  readonly accepted: number;
  /** Events it had already seen (a resend, or a retry of a batch that had gone through). */
  readonly duplicates: number;
  /** Ids of the events taken, in order. */
  readonly sent: readonly string[];
  /** Invalid events, with the reasons; fix them, do not resend them as they are. */
  readonly refused: readonly RefusedEvent[];
  /** Valid events that were not taken; sending them again (same ids) is safe. */
  readonly failed: readonly FailedEvent[];
  /** Requests made, retries included. */
  readonly requests: number;
}

export interface PublishContext {
  readonly runtime: Runtime;
  readonly url: string;
  readonly headers: () => Promise<Record<string, string>>;
  readonly timeoutMs: number;
  readonly policy: RetryPolicy;
  readonly limits: PublishLimits;
  readonly onRetry?: ((error: CourseBundlesError, delayMs: number, retry: number) => void) | undefined;
}

interface Item {
  readonly index: number;
  readonly id: string;
  readonly json: string;
  readonly bytes: number;
}

const encoder = new TextEncoder();

/** Split into batches of at most `maxBatch` events and `maxBodyBytes` (as `[a,b,...]`), in order. */
export function planBatches<T extends { readonly bytes: number }>(items: readonly T[], limits: PublishLimits): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let size = 2; // the brackets
  for (const item of items) {
    const extra = item.bytes + (current.length > 0 ? 1 : 0);
    if (current.length > 0 && (current.length >= limits.maxBatch || size + extra > limits.maxBodyBytes)) {
      batches.push(current);
      current = [];
      size = 2;
    }
    size += item.bytes + (current.length > 0 ? 1 : 0);
    current.push(item);
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export async function publish(ctx: PublishContext, events: readonly CourseEvent[]): Promise<PublishReport> {
  const refused: RefusedEvent[] = [];
  const failed: FailedEvent[] = [];
  const sent: string[] = [];
  const valid: Item[] = [];
  let accepted = 0;
  let duplicates = 0;
  let requests = 0;
  events.forEach((event, index) => {
    const json = JSON.stringify(event) ?? "";
    const id = typeof event?.id === "string" ? event.id : "";
    const problems = eventProblems(event, json);
    if (problems.length > 0) refused.push({ index, id, reasons: problems, by: "client" });
    else valid.push({ index, id, json, bytes: encoder.encode(json).length });
  });
  for (const batch of planBatches(valid, ctx.limits)) {
    const body = `[${batch.map((item) => item.json).join(",")}]`;
    const headers = {
      ...(await ctx.headers()),
      "content-type": "application/cloudevents-batch+json",
      accept: "application/json",
    };
    try {
      const response = await exchange(ctx.runtime, {
        method: "POST",
        url: ctx.url,
        headers,
        body,
        timeoutMs: ctx.timeoutMs,
        policy: ctx.policy,
        retryOn: RETRY_ON,
        onRetry: (error, delayMs, retry) => {
          requests += 1;
          ctx.onRetry?.(error, delayMs, retry);
        },
      });
      requests += 1;
      const answer = (await response.json()) as { accepted?: unknown; duplicates?: unknown };
      accepted += typeof answer.accepted === "number" ? answer.accepted : 0;
      duplicates += typeof answer.duplicates === "number" ? answer.duplicates : 0;
      sent.push(...batch.map((item) => item.id));
    } catch (error) {
      requests += 1;
      const typed =
        error instanceof CourseBundlesError
          ? error
          : new CourseBundlesError(String(error), { status: 0, url: ctx.url, cause: error });
      settleFailedBatch(batch, typed, refused, failed);
    }
  }
  refused.sort((a, b) => a.index - b.index);
  failed.sort((a, b) => a.index - b.index);
  return { ok: refused.length === 0 && failed.length === 0, accepted, duplicates, sent, refused, failed, requests };
}

/** A 422 names the bad events by position in the batch; the rest of the batch was not taken either. */
function settleFailedBatch(batch: readonly Item[], error: CourseBundlesError, refused: RefusedEvent[], failed: FailedEvent[]): void {
  const named = new Map<number, readonly string[]>();
  if (error instanceof InvalidRequest) {
    for (const item of error.errors) {
      if (item.index !== undefined) named.set(item.index, item.reasons ?? []);
    }
  }
  batch.forEach((item, position) => {
    const reasons = named.get(position);
    if (reasons !== undefined) refused.push({ index: item.index, id: item.id, reasons, by: "server" });
    else failed.push({ index: item.index, id: item.id, error });
  });
}
