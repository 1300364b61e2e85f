/**
 * CloudEvents 1.0 for course mutations: one typed helper per event type (fresh unique id, time,
 * the right `subject` and `data`), and the intake's validation rules, checked before sending.
 */
import type { operations } from "./generated/openapi.js";

type Envelope = operations["postEvents"]["requestBody"]["content"]["application/cloudevents+json"];

export type EventEntity = "course" | "courseComponent" | "componentResource" | "resource";
export type EventAction = "created" | "updated" | "deleted";
export type EventType = `oneroster.${EventEntity}.${EventAction}`;

/** A course mutation event as `POST /v1/events` takes it. */
export type CourseEvent = Omit<Envelope, "type"> & { type: EventType };

export interface EventOptions {
  /** The producer (default `course-builder`). */
  readonly source?: string;
  /** The idempotency key (default: a fresh UUID). Reuse one only to resend the same event. */
  readonly id?: string;
  /** When the change happened (default: now). */
  readonly time?: Date | string;
}

export const DEFAULT_SOURCE = "course-builder";

/** The most bytes one event may have (its compact JSON), as the intake measures it. */
export const MAX_EVENT_BYTES = 64 * 1024;

function envelope(
  type: EventType,
  subject: string,
  data: { courseId?: string | undefined; previousCourseId?: string | undefined },
  options: EventOptions = {},
): CourseEvent {
  const time = options.time ?? new Date();
  const payload: { courseId?: string; previousCourseId?: string } = {};
  if (data.courseId !== undefined) payload.courseId = data.courseId;
  if (data.previousCourseId !== undefined) payload.previousCourseId = data.previousCourseId;
  return {
    specversion: "1.0",
    id: options.id ?? globalThis.crypto.randomUUID(),
    source: options.source ?? DEFAULT_SOURCE,
    type,
    time: typeof time === "string" ? time : time.toISOString(),
    subject,
    datacontenttype: "application/json",
    data: payload,
  };
}

export interface CourseRef {
  readonly courseId: string;
}
export interface ComponentRef {
  /** The course component (unit or lesson) that changed. */
  readonly componentId: string;
  readonly courseId: string;
  /** Set when the component moved here from another course: both are rebuilt. */
  readonly previousCourseId?: string;
}
export interface ComponentResourceRef {
  readonly componentResourceId: string;
  readonly courseId: string;
}
export interface ResourceRef {
  readonly resourceId: string;
  /** Optional: without it the worker finds every course that links the resource. */
  readonly courseId?: string;
}

const course =
  (action: EventAction) =>
  (ref: CourseRef, options?: EventOptions): CourseEvent =>
    envelope(`oneroster.course.${action}`, ref.courseId, { courseId: ref.courseId }, options);
const component =
  (action: EventAction) =>
  (ref: ComponentRef, options?: EventOptions): CourseEvent =>
    envelope(`oneroster.courseComponent.${action}`, ref.componentId, ref, options);
const componentResource =
  (action: EventAction) =>
  (ref: ComponentResourceRef, options?: EventOptions): CourseEvent =>
    envelope(`oneroster.componentResource.${action}`, ref.componentResourceId, ref, options);
const resource =
  (action: EventAction) =>
  (ref: ResourceRef, options?: EventOptions): CourseEvent =>
    envelope(`oneroster.resource.${action}`, ref.resourceId, { courseId: ref.courseId }, options);

/** One builder per event type; each call makes a new event with a new id. */
export const courseEvents = {
  courseCreated: course("created"),
  courseUpdated: course("updated"),
  courseDeleted: course("deleted"),
  courseComponentCreated: component("created"),
  courseComponentUpdated: component("updated"),
  courseComponentDeleted: component("deleted"),
  componentResourceCreated: componentResource("created"),
  componentResourceUpdated: componentResource("updated"),
  componentResourceDeleted: componentResource("deleted"),
  resourceCreated: resource("created"),
  resourceUpdated: resource("updated"),
  resourceDeleted: resource("deleted"),
} as const;

const ID = /^[A-Za-z0-9._:-]{1,128}$/;
const REF = /^[A-Za-z0-9:._-]{1,200}$/;
const DOTS = /^\.+$/;
const TYPE = /^oneroster\.(course|courseComponent|componentResource|resource)\.(created|updated|deleted)$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function isRef(value: unknown): boolean {
  return typeof value === "string" && REF.test(value) && !DOTS.test(value);
}

/**
 * Why the intake would refuse `event` (docs/events.md, "Validation rules"); empty when valid.
 * `json` is the event's compact JSON, for the size rule.
 */
export function eventProblems(event: unknown, json: string = JSON.stringify(event) ?? ""): string[] {
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    return ["the event must be a JSON object"];
  }
  const e = event as Record<string, unknown>;
  const problems: string[] = [];
  if (e.specversion !== "1.0") problems.push('specversion: must be "1.0"');
  if (typeof e.id !== "string" || !ID.test(e.id)) problems.push("id: 1-128 characters of A-Z a-z 0-9 . _ : -");
  if (typeof e.source !== "string" || e.source.trim() === "") problems.push("source: a non-blank string");
  if (typeof e.type !== "string" || !TYPE.test(e.type)) problems.push("type: oneroster.<entity>.<action>");
  if (!isRef(e.subject)) problems.push("subject: 1-200 characters of A-Z a-z 0-9 : . _ -");
  if (e.time !== undefined && (typeof e.time !== "string" || !RFC3339.test(e.time))) {
    problems.push("time: an RFC 3339 timestamp with offset");
  }
  const data = e.data ?? {};
  if (typeof data !== "object" || Array.isArray(data)) {
    problems.push("data: a JSON object");
  } else {
    const d = data as Record<string, unknown>;
    const needsCourse = typeof e.type === "string" && !e.type.startsWith("oneroster.resource.");
    if (d.courseId === undefined ? needsCourse : !isRef(d.courseId)) {
      problems.push(needsCourse && d.courseId === undefined ? "data.courseId: required" : "data.courseId: invalid id");
    }
    if (d.previousCourseId !== undefined && !isRef(d.previousCourseId)) {
      problems.push("data.previousCourseId: invalid id");
    }
  }
  const bytes = new TextEncoder().encode(json).length;
  if (bytes > MAX_EVENT_BYTES) problems.push(`size: ${bytes} bytes, more than ${MAX_EVENT_BYTES}`);
  return problems;
}
