/**
 * Against the real API, worker and simulator (stack.ts): every endpoint read through the client,
 * an event published and the new title served, an ambiguous redirect surfacing its candidates.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  Conflict,
  courseEvents,
  createClient,
  Forbidden,
  NotFound,
  responseMeta,
  Unauthorized,
  type Bundle,
  type CourseBundlesClient,
} from "../../src/index.js";
import { startStack, TOKENS, type Stack } from "./stack.js";

const COURSE = "course-001";
const LESSONS = "/ims/oneroster/rostering/v1p2/courses/components";
const COMPONENT_RESOURCES = "/ims/oneroster/rostering/v1p2/courses/component-resources";

let stack: Stack;
let client: CourseBundlesClient;
const statuses: number[] = [];

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} within ${timeoutMs} ms (last error: ${String(last)}); logs:\n${stack.logs()}`);
}

before(async () => {
  stack = await startStack();
  const counting: typeof fetch = async (input, init) => {
    const answer = await fetch(input, init);
    statuses.push(answer.status);
    return answer;
  };
  client = createClient({ baseUrl: stack.apiUrl, token: TOKENS.all, fetch: counting });
});

after(async () => {
  await stack?.stop();
});

describe("reads against the real API", () => {
  let bundle: Bundle;

  it("builds and serves a bundle, then revalidates it with a 304", async () => {
    bundle = await client.getBundle(COURSE);
    assert.equal(bundle.courseId, COURSE);
    assert.ok(bundle.units.length > 0);
    assert.equal(responseMeta(bundle)?.generation, bundle.generation);
    statuses.length = 0;
    const again = await client.getBundle(COURSE);
    assert.deepEqual(statuses, [304]);
    assert.equal(again, bundle);
  });

  it("shares one request among concurrent identical reads", async () => {
    client.clearCache();
    statuses.length = 0;
    const all = await Promise.all(Array.from({ length: 20 }, () => client.getBundle(COURSE)));
    assert.equal(statuses.length, 1);
    assert.ok(all.every((b) => b === all[0]));
  });

  it("reads the same course by slug, and its unit, lesson and resource slices", async () => {
    const bySlug = await client.getBundleBySlug(bundle.course.slug);
    assert.equal(bySlug.courseId, COURSE);
    const unit = bundle.units[0]!;
    assert.deepEqual(await client.getUnit(COURSE, unit.slug), unit);
    const lesson = unit.lessons[0]!;
    assert.deepEqual(await client.getLesson(COURSE, unit.slug, lesson.slug), { ...lesson, unitSlug: unit.slug });
    const resource = lesson.resources[0]!;
    assert.deepEqual(await client.findResource(COURSE, resource.resourceId), {
      ...resource,
      unitSlug: unit.slug,
      lessonSlug: lesson.slug,
    });
  });

  it("lists the subject's built courses", async () => {
    const listing = await client.getSubjectCourses(bundle.course.subject);
    assert.equal(listing.subject, bundle.course.subject);
    const mine = listing.courses.find((c) => c.courseId === COURSE);
    assert.deepEqual(mine?.totals, bundle.totals);
  });

  it("resolves assessment redirects to the bundle's paths", async () => {
    const { subject, slug: course } = bundle.course;
    let checked = 0;
    for (const unit of bundle.units) {
      for (const resource of unit.lessons.flatMap((l) => l.resources)) {
        if (resource.kind === "quiz") {
          assert.equal(await client.quizPath({ subject, course, unit: unit.slug, slug: resource.slug }), resource.path);
          checked++;
        } else if (resource.kind === "unit-test") {
          assert.equal(await client.unitTestPath({ subject, course, unit: unit.slug, slug: resource.slug }), resource.path);
          checked++;
        }
      }
    }
    if (bundle.courseChallenge) {
      assert.equal(await client.courseChallengePath({ subject, course, slug: bundle.courseChallenge.slug }), bundle.courseChallenge.path);
    }
    assert.ok(checked > 0);
    await assert.rejects(client.quizPath({ subject, course, unit: bundle.units[0]!.slug, slug: "no-such-quiz" }), NotFound);
  });

  it("maps 404, 401 and 403 to typed errors", async () => {
    await assert.rejects(client.getUnit(COURSE, "no-such-unit"), NotFound);
    const stranger = createClient({ baseUrl: stack.apiUrl, token: "nobody" });
    await assert.rejects(stranger.getBundle(COURSE), Unauthorized);
    const reader = createClient({ baseUrl: stack.apiUrl, token: TOKENS.readOnly });
    await assert.rejects(reader.getActiveAttempt("learner-1", "res-000001"), Forbidden);
    const report = await reader.publishEvents([courseEvents.courseUpdated({ courseId: COURSE })]);
    assert.equal(report.ok, false);
    assert.ok(report.failed[0]?.error instanceof Forbidden);
  });
});

describe("attempt pointers against the real API", () => {
  const user = "ts-learner-1";
  const resource = "res-000003";

  it("resolves, reads and resets an attempt", async () => {
    assert.equal(await client.getActiveAttempt(user, resource), null);
    const resolved = await client.resolveAttempt(user, resource);
    assert.ok(resolved.attemptNumber >= 1);
    assert.equal(resolved.created, true);
    assert.equal((await client.getActiveAttempt(user, resource))?.attemptNumber, resolved.attemptNumber);
    const conflict = await client.resetAttempt(user, resource, resolved.attemptNumber + 1).catch((e: unknown) => e);
    assert.ok(conflict instanceof Conflict);
    assert.equal(conflict.activeAttempt, resolved.attemptNumber);
    assert.deepEqual(await client.resetAttempt(user, resource, resolved.attemptNumber), { clearedAttempt: resolved.attemptNumber });
    assert.equal(await client.getActiveAttempt(user, resource), null);
  });
});

describe("events against the real worker", () => {
  it("publishes a change and the new title is served", async () => {
    const before = await client.getBundle(COURSE);
    const unit = before.units[0]!;
    const lesson = unit.lessons[0]!;
    const title = `Renamed by the TypeScript client ${Date.now()}`;
    await stack.simWrite("PUT", `${LESSONS}/${lesson.sourcedId}`, { courseComponent: { title } });
    const event = courseEvents.courseComponentUpdated({ componentId: lesson.sourcedId, courseId: COURSE });
    const report = await client.publishEvents([event]);
    assert.deepEqual({ ok: report.ok, accepted: report.accepted, sent: report.sent }, { ok: true, accepted: 1, sent: [event.id] });
    const served = await eventually("the new title served", async () => {
      const now = await client.getLesson(COURSE, unit.slug, lesson.slug);
      return now.title === title ? now : undefined;
    });
    assert.ok(responseMeta(served)!.generation! > before.generation);
    const again = await client.publishEvents([event]);
    assert.deepEqual({ accepted: again.accepted, duplicates: again.duplicates }, { accepted: 0, duplicates: 1 });
  });

  it("surfaces an ambiguous redirect's candidates as a Conflict", async () => {
    const bundle = await client.getBundle(COURSE);
    const { subject, slug: course } = bundle.course;
    // A quiz linked into a second lesson of its unit: its slug now resolves to two places.
    let placed: { unit: string; quiz: string; quizSlug: string; other: string; path: string } | undefined;
    for (const unit of bundle.units) {
      const withQuiz = unit.lessons.find((l) => l.resources.some((r) => r.kind === "quiz"));
      const other = unit.lessons.find((l) => l !== withQuiz);
      const quiz = withQuiz?.resources.find((r) => r.kind === "quiz");
      if (quiz && other) {
        placed = { unit: unit.slug, quiz: quiz.resourceId, quizSlug: quiz.slug, other: other.sourcedId, path: quiz.path };
        break;
      }
    }
    assert.ok(placed, "a unit with a quiz and a second lesson");
    const link = `cr-ts-${Date.now()}`;
    await stack.simWrite("POST", COMPONENT_RESOURCES, {
      componentResource: {
        sourcedId: link,
        title: "The same quiz, linked twice",
        courseComponent: { sourcedId: placed.other },
        resource: { sourcedId: placed.quiz },
        sortOrder: 99,
      },
    });
    const report = await client.publishEvents([courseEvents.componentResourceCreated({ componentResourceId: link, courseId: COURSE })]);
    assert.equal(report.ok, true);
    const where = { subject, course, unit: placed.unit, slug: placed.quizSlug };
    const conflict = await eventually("the redirect to become ambiguous", async () => {
      const outcome = await client.quizPath(where).catch((e: unknown) => e);
      return outcome instanceof Conflict ? outcome : undefined;
    });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.problemType, "ambiguous-redirect");
    assert.equal(conflict.candidates.length, 2);
    assert.ok(conflict.candidates.includes(placed.path), `${placed.path} in ${conflict.candidates.join(", ")}`);
  });
});
