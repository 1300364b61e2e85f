/** @course-bundles/client: typed reads, attempt pointers and event publishing for course-bundles. */
export {
  CourseBundlesClient,
  createClient,
  responseMeta,
  DEFAULT_CACHE,
  DEFAULT_READ_RETRY,
  DEFAULT_TIMEOUT_MS,
  type AssessmentKind,
  type AssessmentQuery,
  type Attempt,
  type Bundle,
  type ClearedAttempt,
  type ClientOptions,
  type CourseSummary,
  type Lesson,
  type LessonSlice,
  type ResolvedAttempt,
  type Resource,
  type ResourceSlice,
  type ResponseMeta,
  type SubjectCourses,
  type Unit,
} from "./client.js";
export {
  BadRequest,
  Conflict,
  CourseBundlesError,
  Forbidden,
  InvalidRequest,
  NetworkError,
  NotFound,
  PayloadTooLarge,
  RateLimited,
  ServerError,
  Unauthorized,
  Unavailable,
  UnexpectedResponse,
  UnsupportedMediaType,
  UpstreamError,
  type InvalidItem,
  type Problem,
} from "./errors.js";
export {
  courseEvents,
  eventProblems,
  DEFAULT_SOURCE,
  MAX_EVENT_BYTES,
  type CourseEvent,
  type EventOptions,
  type EventType,
} from "./events.js";
export {
  DEFAULT_EVENTS_RETRY,
  DEFAULT_PUBLISH_LIMITS,
  type FailedEvent,
  type PublishLimits,
  type PublishReport,
  type RefusedEvent,
} from "./publish.js";
export { BundleNotInScope, bundleScopeFor, createBundleScope, type BundleReader, type BundleScope } from "./scope.js";
export { findLesson, findResourcePlacements, findUnit, type PlacedResource } from "./bundle.js";
export type { CacheLimits } from "./cache.js";
export type { RetryPolicy, Runtime } from "./transport.js";
export type { components, operations, paths } from "./generated/openapi.js";
