/**
 * Every non-2xx answer of the API becomes one typed error, picked by status (and problem type).
 * The API answers errors as RFC 9457 problem+json; the problem is kept on `error.problem`.
 */
import type { components } from "./generated/openapi.js";

export type Problem = components["schemas"]["Problem"];

/** `urn:course-bundles:problem:<name>`: the name part, e.g. `course-not-found`. */
const TYPE_BASE = "urn:course-bundles:problem:";

export interface ErrorContext {
  readonly status: number;
  readonly problem?: Problem | undefined;
  readonly url?: string | undefined;
  readonly requestId?: string | undefined;
  readonly retryAfterMs?: number | undefined;
  readonly cause?: unknown;
}

/** The base of every error the client throws (or reports, for events). */
export class CourseBundlesError extends Error {
  /** HTTP status; 0 when no answer arrived (network error, timeout). */
  readonly status: number;
  /** The problem name (`course-not-found`, `ambiguous-redirect`, ...), or "" when none. */
  readonly problemType: string;
  readonly problem: Problem | undefined;
  readonly url: string | undefined;
  readonly requestId: string | undefined;
  /** The server's `Retry-After`, in milliseconds, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, context: ErrorContext) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = new.target.name;
    this.status = context.status;
    this.problem = context.problem;
    const type = context.problem?.type ?? "";
    this.problemType = type.startsWith(TYPE_BASE) ? type.slice(TYPE_BASE.length) : type;
    this.url = context.url;
    this.requestId = context.requestId ?? context.problem?.requestId ?? undefined;
    this.retryAfterMs = context.retryAfterMs;
  }
}

/** 400: a malformed request (e.g. a bad Content-Length). */
export class BadRequest extends CourseBundlesError {}
/** 401: no token, a malformed header or an unknown token. */
export class Unauthorized extends CourseBundlesError {}
/** 403: the token lacks the scope (`read`, `attempts`, `events`). */
export class Forbidden extends CourseBundlesError {}
/** 404: unknown course, slug, unit, lesson, resource, redirect target or attempt. */
export class NotFound extends CourseBundlesError {}
/** 413: the body is larger than the server's limit. */
export class PayloadTooLarge extends CourseBundlesError {}
/** 415: the body's media type is not accepted. */
export class UnsupportedMediaType extends CourseBundlesError {}
/** 502: OneRoster answered with an error, or the course cannot be built into a bundle. */
export class UpstreamError extends CourseBundlesError {}
/** 500 and any status not named here. */
export class ServerError extends CourseBundlesError {}

/** 409: a redirect slug resolving to several places (`candidates`), or an attempt conflict. */
export class Conflict extends CourseBundlesError {
  /** Every canonical path the redirect slug resolves to (empty for an attempt conflict). */
  readonly candidates: readonly string[];
  /** On an attempt reset: the attempt that is active. */
  readonly activeAttempt: number | undefined;

  constructor(message: string, context: ErrorContext) {
    super(message, context);
    this.candidates = stringList(context.problem?.candidates);
    const active = context.problem?.activeAttempt;
    this.activeAttempt = typeof active === "number" ? active : undefined;
  }
}

/** One entry of a 422's `errors`: a parameter (`in`, `name`, `reason`) or an event (`index`, `reasons`). */
export interface InvalidItem {
  readonly in?: string;
  readonly name?: string;
  readonly reason?: string;
  readonly index?: number;
  readonly reasons?: readonly string[];
}

/** 422: a parameter breaks its pattern, or (events) at least one event is invalid. */
export class InvalidRequest extends CourseBundlesError {
  readonly errors: readonly InvalidItem[];

  constructor(message: string, context: ErrorContext) {
    super(message, context);
    const raw = context.problem?.errors;
    this.errors = Array.isArray(raw) ? raw.map(invalidItem) : [];
  }
}

/** 429: the token is past its rate; nothing was done. `retryAfterMs` says when to come back. */
export class RateLimited extends CourseBundlesError {}

/** 503: Redis, OneRoster or the broker cannot answer now, or the events backlog is full. */
export class Unavailable extends CourseBundlesError {}

/** No answer: the connection failed or the attempt timed out. */
export class NetworkError extends CourseBundlesError {}

/** An answer that is not what the API sends (e.g. an HTML page from a proxy, broken JSON). */
export class UnexpectedResponse extends CourseBundlesError {}

const BY_STATUS: Record<number, new (message: string, context: ErrorContext) => CourseBundlesError> = {
  400: BadRequest,
  401: Unauthorized,
  403: Forbidden,
  404: NotFound,
  409: Conflict,
  413: PayloadTooLarge,
  415: UnsupportedMediaType,
  422: InvalidRequest,
  429: RateLimited,
  502: UpstreamError,
  503: Unavailable,
};

/** The typed error for a non-2xx answer; reads the body (a problem document when the API sent it). */
export async function errorFromResponse(response: Response, url: string): Promise<CourseBundlesError> {
  const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
  const requestId = response.headers.get("x-request-id") ?? undefined;
  let text = "";
  try {
    text = await response.text();
  } catch (cause) {
    return new NetworkError(`the answer's body could not be read (${response.status})`, {
      status: response.status,
      url,
      requestId,
      retryAfterMs,
      cause,
    });
  }
  const problem = parseProblem(text, response.headers.get("content-type"));
  const context: ErrorContext = { status: response.status, problem, url, requestId, retryAfterMs };
  const Type = BY_STATUS[response.status] ?? ServerError;
  if (problem === undefined) {
    if (response.status >= 500 || response.status === 429) {
      // A proxy's own page for an outage still means "retry": keep the status-typed error.
      return new Type(`${response.status} ${response.statusText || "error"} from ${url}`, context);
    }
    return new UnexpectedResponse(`${response.status} answer without a problem document from ${url}`, context);
  }
  return new Type(problem.detail || problem.title || `status ${response.status}`, context);
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; undefined when absent or garbage. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function parseProblem(text: string, contentType: string | null): Problem | undefined {
  if (!contentType?.includes("json") || text === "") return undefined;
  try {
    const doc: unknown = JSON.parse(text);
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return undefined;
    const { status, title } = doc as Record<string, unknown>;
    if (typeof status !== "number" || typeof title !== "string") return undefined;
    return doc as Problem;
  } catch {
    return undefined;
  }
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function invalidItem(raw: unknown): InvalidItem {
  if (raw === null || typeof raw !== "object") return {};
  const item = raw as Record<string, unknown>;
  const out: { -readonly [K in keyof InvalidItem]: InvalidItem[K] } = {};
  if (typeof item.in === "string") out.in = item.in;
  if (typeof item.name === "string") out.name = item.name;
  if (typeof item.reason === "string") out.reason = item.reason;
  if (typeof item.index === "number") out.index = item.index;
  if (Array.isArray(item.reasons)) out.reasons = stringList(item.reasons);
  return out;
}
