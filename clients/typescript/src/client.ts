/**
 * The client: typed reads (single-flight per URL, ETag revalidation from a bounded cache,
 * `Retry-After` honoured), attempt pointers, and event publishing. Types come from the
 * service's OpenAPI document (src/generated/openapi.ts, made by openapi-typescript).
 */
import { ValidatorCache, type CacheLimits } from "./cache.js";
import { CourseBundlesError, UnexpectedResponse } from "./errors.js";
import type { CourseEvent } from "./events.js";
import type { components, operations, paths } from "./generated/openapi.js";
import {
  DEFAULT_EVENTS_RETRY,
  DEFAULT_PUBLISH_LIMITS,
  publish,
  type PublishLimits,
  type PublishReport,
} from "./publish.js";
import { SingleFlight } from "./singleflight.js";
import { defaultRuntime, exchange, type RetryPolicy, type Runtime } from "./transport.js";

type Schemas = components["schemas"];
export type Bundle = Schemas["BundleOut"];
export type Unit = Schemas["UnitOut"];
export type Lesson = Schemas["LessonOut"];
export type Resource = Schemas["ResourceOut"];
export type LessonSlice = Schemas["LessonSliceOut"];
export type ResourceSlice = Schemas["ResourceSliceOut"];
export type SubjectCourses = Schemas["SubjectCoursesOut"];
export type CourseSummary = Schemas["CourseSummaryOut"];
export type Attempt = Schemas["AttemptOut"];
export type ResolvedAttempt = Schemas["ResolvedAttemptOut"];
export type ClearedAttempt = Schemas["ClearedAttemptOut"];
export type AssessmentQuery = operations["resolveAssessmentRedirect"]["parameters"]["query"];
export type AssessmentKind = AssessmentQuery["kind"];

/** What the headers of a bundle-derived answer said (see `responseMeta`). */
export interface ResponseMeta {
  readonly etag: string | undefined;
  /** Grows with every rebuild of the course. */
  readonly generation: number | undefined;
  readonly builtAt: string | undefined;
  /** An older bundle was served (OneRoster unreachable or past freshness; refresh under way). */
  readonly stale: boolean;
  readonly requestId: string | undefined;
}

export interface ClientOptions {
  /** Where the API listens, e.g. `https://bundles.internal` (no trailing path needed). */
  readonly baseUrl: string;
  /** A bearer token from `CB_API_TOKENS`, or a function giving one per request. */
  readonly token: string | (() => string | Promise<string>);
  /** Per attempt (a cold course is built while the first reader waits, up to 30 s server-side). */
  readonly timeoutMs?: number;
  /** The validator cache's bounds, or `false` for none (single-flight stays). */
  readonly cache?: Partial<CacheLimits> | false;
  /** Retries of reads on `503`/`429` (with `Retry-After`) and network errors. */
  readonly retry?: Partial<RetryPolicy>;
  /** Event publishing: retries, and the intake's limits if the server was configured otherwise. */
  readonly events?: { readonly retry?: Partial<RetryPolicy>; readonly limits?: Partial<PublishLimits> };
  /** Sent with every request (e.g. `user-agent`, `x-request-id`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch;
  /** Called before each retry. */
  readonly onRetry?: (error: CourseBundlesError, delayMs: number, retry: number) => void;
  /** Clock, sleep and randomness (tests). */
  readonly runtime?: Partial<Runtime>;
}

export const DEFAULT_TIMEOUT_MS = 35_000;
export const DEFAULT_CACHE: CacheLimits = { maxEntries: 500, maxBytes: 64 * 1024 * 1024 };
export const DEFAULT_READ_RETRY: RetryPolicy = { maxRetries: 3, deadlineMs: 15_000, baseDelayMs: 100, maxDelayMs: 2_000 };

/** Reads are retried when nothing was done and the server says when to come back. */
const READ_RETRY_ON: ReadonlySet<number> = new Set([429, 503]);

const meta = new WeakMap<object, ResponseMeta>();

/** The headers of the latest answer for `value` (a bundle, unit, lesson, resource or subject listing). */
export function responseMeta(value: object): ResponseMeta | undefined {
  return meta.get(value);
}

// Typed against the generated `paths`: a renamed route fails the build, not production.
const ROUTES = {
  bundle: "/v1/courses/{courseId}/bundle",
  bundleBySlug: "/v1/courses/by-slug/{courseSlug}/bundle",
  unit: "/v1/courses/{courseId}/units/{unitSlug}",
  lesson: "/v1/courses/{courseId}/units/{unitSlug}/lessons/{lessonSlug}",
  resource: "/v1/courses/{courseId}/resources/{resourceId}",
  subject: "/v1/subjects/{subject}/courses",
  redirect: "/v1/redirects/assessment",
  attempt: "/v1/attempts/{userId}/{resourceId}",
  resolve: "/v1/attempts/{userId}/{resourceId}/resolve",
  events: "/v1/events",
} as const satisfies Record<string, keyof paths>;

type PathParams<Op extends keyof operations> = operations[Op]["parameters"]["path"];

function expand(template: string, params: Readonly<Record<string, string>>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params[name] ?? ""));
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function metaOf(response: Response): ResponseMeta {
  const generation = response.headers.get("x-bundle-generation");
  return {
    etag: response.headers.get("etag") ?? undefined,
    generation: generation === null ? undefined : Number(generation),
    builtAt: response.headers.get("x-bundle-built-at") ?? undefined,
    stale: response.headers.get("x-bundle-stale") === "true",
    requestId: response.headers.get("x-request-id") ?? undefined,
  };
}

export class CourseBundlesClient {
  readonly #base: string;
  readonly #token: () => string | Promise<string>;
  readonly #timeoutMs: number;
  readonly #cache: ValidatorCache;
  readonly #flights = new SingleFlight();
  readonly #readRetry: RetryPolicy;
  readonly #eventsRetry: RetryPolicy;
  readonly #limits: PublishLimits;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #runtime: Runtime;
  readonly #onRetry: ClientOptions["onRetry"];

  constructor(options: ClientOptions) {
    this.#base = options.baseUrl.replace(/\/+$/, "");
    const token = options.token;
    this.#token = typeof token === "function" ? token : () => token;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const limits = options.cache === false ? { maxEntries: 0, maxBytes: 0 } : { ...DEFAULT_CACHE, ...options.cache };
    this.#cache = new ValidatorCache(limits);
    this.#readRetry = { ...DEFAULT_READ_RETRY, ...options.retry };
    this.#eventsRetry = { ...DEFAULT_EVENTS_RETRY, ...options.events?.retry };
    this.#limits = { ...DEFAULT_PUBLISH_LIMITS, ...options.events?.limits };
    this.#headers = options.headers ?? {};
    this.#runtime = { ...defaultRuntime, ...options.runtime, ...(options.fetch ? { fetch: options.fetch } : {}) };
    this.#onRetry = options.onRetry;
  }

  // --- reads (scope `read`) ----------------------------------------------------------------------

  /** The whole course bundle; built by the server on first request. `NotFound` for an unknown course. */
  getBundle(courseId: string): Promise<Bundle> {
    return this.#get(expand(ROUTES.bundle, { courseId } satisfies PathParams<"getCourseBundle">));
  }

  /** The bundle of the course with this slug (`NotFound` when no built course has it). */
  getBundleBySlug(courseSlug: string): Promise<Bundle> {
    return this.#get(expand(ROUTES.bundleBySlug, { courseSlug } satisfies PathParams<"getCourseBundleBySlug">));
  }

  /** One unit exactly as in the bundle, with its lessons and their resources. */
  getUnit(courseId: string, unitSlug: string): Promise<Unit> {
    return this.#get(expand(ROUTES.unit, { courseId, unitSlug } satisfies PathParams<"getUnit">));
  }

  /** One lesson as in the bundle, plus `unitSlug`. */
  getLesson(courseId: string, unitSlug: string, lessonSlug: string): Promise<LessonSlice> {
    const params = { courseId, unitSlug, lessonSlug } satisfies PathParams<"getLesson">;
    return this.#get(expand(ROUTES.lesson, params));
  }

  /** A resource of the course and where it sits (`unitSlug`, `lessonSlug`; null for the course challenge). */
  findResource(courseId: string, resourceId: string): Promise<ResourceSlice> {
    return this.#get(expand(ROUTES.resource, { courseId, resourceId } satisfies PathParams<"getResource">));
  }

  /** The built courses of a subject, ordered by slug (an unknown subject: an empty list). */
  getSubjectCourses(subject: string): Promise<SubjectCourses> {
    return this.#get(expand(ROUTES.subject, { subject } satisfies PathParams<"listSubjectCourses">));
  }

  /**
   * The canonical path of an assessment page. `NotFound` when nothing matches; `Conflict` with
   * `candidates` when the slug sits in more than one place of the unit.
   */
  async resolveAssessmentRedirect(query: AssessmentQuery): Promise<string> {
    const search = new URLSearchParams({ subject: query.subject, course: query.course, kind: query.kind, slug: query.slug });
    if (query.unit) search.set("unit", query.unit);
    const answer = await this.#get<{ path: string }>(`${ROUTES.redirect}?${search.toString()}`);
    return answer.path;
  }

  /** The path of a unit's quiz. */
  quizPath(where: { subject: string; course: string; unit: string; slug: string }): Promise<string> {
    return this.resolveAssessmentRedirect({ ...where, kind: "quiz" });
  }

  /** The path of a unit test. */
  unitTestPath(where: { subject: string; course: string; unit: string; slug: string }): Promise<string> {
    return this.resolveAssessmentRedirect({ ...where, kind: "unit-test" });
  }

  /** The path of the course challenge (it has no unit). */
  courseChallengePath(where: { subject: string; course: string; slug: string }): Promise<string> {
    return this.resolveAssessmentRedirect({ ...where, kind: "course-challenge" });
  }

  // --- attempt pointers (scope `attempts`) -------------------------------------------------------

  /** The active attempt, or `null` when the learner has none for this resource. */
  async getActiveAttempt(userId: string, resourceId: string): Promise<Attempt | null> {
    try {
      return await this.#get<Attempt>(expand(ROUTES.attempt, { userId, resourceId } satisfies PathParams<"getActiveAttempt">));
    } catch (error) {
      if (error instanceof CourseBundlesError && error.problemType === "no-active-attempt") return null;
      throw error;
    }
  }

  /** The active attempt, or a new one derived from OneRoster; concurrent callers agree on one number. */
  resolveAttempt(userId: string, resourceId: string): Promise<ResolvedAttempt> {
    const path = expand(ROUTES.resolve, { userId, resourceId } satisfies PathParams<"resolveAttempt">);
    return this.#json<ResolvedAttempt>("POST", path);
  }

  /** Clears attempt `attempt`'s state and pointer. `Conflict` (`activeAttempt`) if another one is active. */
  resetAttempt(userId: string, resourceId: string, attempt: number): Promise<ClearedAttempt> {
    const path = expand(ROUTES.attempt, { userId, resourceId } satisfies PathParams<"resetAttempt">);
    return this.#json<ClearedAttempt>("DELETE", `${path}?attempt=${encodeURIComponent(String(attempt))}`);
  }

  // --- events (scope `events`) ---------------------------------------------------------------------

  /**
   * Sends the events (build them with `courseEvents`) in batches within the intake's limits and
   * reports each one's fate. Retries keep the ids; a `422` is never retried. Does not throw for
   * events the server did not take: see `refused` and `failed` in the report.
   */
  publishEvents(events: readonly CourseEvent[]): Promise<PublishReport> {
    return publish(
      {
        runtime: this.#runtime,
        url: this.#base + ROUTES.events,
        headers: () => this.#requestHeaders(),
        timeoutMs: this.#timeoutMs,
        policy: this.#eventsRetry,
        limits: this.#limits,
        onRetry: this.#onRetry,
      },
      events,
    );
  }

  /** Forget every cached answer (the next reads are unconditional). */
  clearCache(): void {
    this.#cache.clear();
  }

  // --- plumbing ------------------------------------------------------------------------------------

  async #requestHeaders(): Promise<Record<string, string>> {
    return { ...this.#headers, authorization: `Bearer ${await this.#token()}` };
  }

  /** A GET through single-flight and the validator cache. */
  #get<T>(path: string): Promise<T> {
    const url = this.#base + path;
    return this.#flights.run(url, () => this.#revalidate<T>(url));
  }

  async #revalidate<T>(url: string): Promise<T> {
    const cached = this.#cache.get<T>(url);
    const headers: Record<string, string> = { ...(await this.#requestHeaders()), accept: "application/json" };
    if (cached !== undefined) headers["if-none-match"] = cached.etag;
    const response = await this.#exchange("GET", url, headers);
    if (response.status === 304) {
      if (cached === undefined) {
        throw new UnexpectedResponse(`304 for ${url} without a cached answer`, { status: 304, url });
      }
      if (typeof cached.value === "object" && cached.value !== null) {
        const fresh = metaOf(response);
        meta.set(cached.value, { ...fresh, etag: fresh.etag ?? cached.etag });
      }
      return cached.value;
    }
    const text = await response.text();
    const value = this.#parse<T>(text, url, response);
    const etag = response.headers.get("etag");
    if (etag !== null) this.#cache.set(url, { etag, value, bytes: text.length });
    else this.#cache.delete(url);
    return value;
  }

  async #json<T>(method: "POST" | "DELETE", path: string): Promise<T> {
    const url = this.#base + path;
    const headers = { ...(await this.#requestHeaders()), accept: "application/json" };
    const response = await this.#exchange(method, url, headers);
    return this.#parse<T>(await response.text(), url, response);
  }

  #exchange(method: "GET" | "POST" | "DELETE", url: string, headers: Record<string, string>): Promise<Response> {
    return exchange(this.#runtime, {
      method,
      url,
      headers,
      timeoutMs: this.#timeoutMs,
      policy: this.#readRetry,
      retryOn: READ_RETRY_ON,
      onRetry: this.#onRetry,
    });
  }

  #parse<T>(text: string, url: string, response: Response): T {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (cause) {
      throw new UnexpectedResponse(`${url} answered ${response.status} with a body that is not JSON`, {
        status: response.status,
        url,
        cause,
      });
    }
    // Cached answers are shared by every caller: frozen so one caller cannot change another's.
    deepFreeze(value);
    if (typeof value === "object" && value !== null) meta.set(value, metaOf(response));
    return value as T;
  }
}

/** A client for `options.baseUrl` with `options.token`. */
export function createClient(options: ClientOptions): CourseBundlesClient {
  return new CourseBundlesClient(options);
}
