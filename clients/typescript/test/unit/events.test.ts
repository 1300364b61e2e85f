import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { courseEvents, createClient, eventProblems, NetworkError, Unavailable, type ClientOptions, type CourseEvent } from "../../src/index.js";
import { planBatches } from "../../src/publish.js";
import { json, problem, stubFetch, virtualTime, type Handler } from "../support/stub.js";

function client(handler: Handler, options: Partial<ClientOptions> = {}) {
  const stub = stubFetch(handler);
  const time = virtualTime();
  const c = createClient({ baseUrl: "http://api.test", token: "tok", fetch: stub.fetch, runtime: time, ...options });
  return { c, calls: stub.calls, sleeps: time.sleeps };
}

const accepted = (call: { body: string | undefined }) => json({ accepted: (JSON.parse(call.body ?? "[]") as unknown[]).length, duplicates: 0 }, 202);

function updates(n: number): CourseEvent[] {
  return Array.from({ length: n }, (_, i) => courseEvents.courseUpdated({ courseId: `course-${i}` }));
}

const ids = (body: string | undefined) => (JSON.parse(body ?? "[]") as CourseEvent[]).map((e) => e.id);

describe("event helpers", () => {
  it("build valid CloudEvents with unique ids", () => {
    const all = [
      courseEvents.courseCreated({ courseId: "c1" }),
      courseEvents.courseDeleted({ courseId: "c1" }),
      courseEvents.courseComponentUpdated({ componentId: "unit-7", courseId: "c1", previousCourseId: "c0" }),
      courseEvents.componentResourceCreated({ componentResourceId: "cr-1", courseId: "c1" }),
      courseEvents.resourceUpdated({ resourceId: "res-1" }),
      courseEvents.resourceDeleted({ resourceId: "res-1", courseId: "c1" }, { source: "importer", id: "evt-1" }),
    ];
    for (const event of all) assert.deepEqual(eventProblems(event), [], JSON.stringify(event));
    assert.equal(new Set(all.map((e) => e.id)).size, all.length);
    assert.deepEqual(all[2], {
      ...all[2],
      type: "oneroster.courseComponent.updated",
      subject: "unit-7",
      data: { courseId: "c1", previousCourseId: "c0" },
      specversion: "1.0",
      source: "course-builder",
    });
    assert.deepEqual(all[4]?.data, {});
    assert.equal(all[5]?.id, "evt-1");
    assert.equal(all[5]?.source, "importer");
  });

  it("name what the intake would refuse", () => {
    const bad = { ...courseEvents.courseUpdated({ courseId: "c1" }), id: "has space", data: {} };
    assert.deepEqual(eventProblems(bad), ["id: 1-128 characters of A-Z a-z 0-9 . _ : -", "data.courseId: required"]);
    const big = courseEvents.resourceUpdated({ resourceId: "r1" });
    (big as { data: Record<string, unknown> }).data = { note: "x".repeat(70_000) };
    assert.match(eventProblems(big)[0] ?? "", /^size: /);
  });
});

describe("batching", () => {
  it("splits by count and by body bytes, in order", () => {
    const items = Array.from({ length: 7 }, (_, i) => ({ i, bytes: 10 }));
    assert.deepEqual(planBatches(items, { maxBatch: 3, maxBodyBytes: 1000 }).map((b) => b.map((x) => x.i)), [[0, 1, 2], [3, 4, 5], [6]]);
    // [a,b] of 10-byte events: 2 + 10 + 1 + 10 = 23 bytes fits 25, a third does not
    assert.deepEqual(planBatches(items, { maxBatch: 100, maxBodyBytes: 25 }).map((b) => b.length), [2, 2, 2, 1]);
  });

  it("sends 2,500 events as batches of at most 1,000", async () => {
    const { c, calls } = client(accepted);
    const report = await c.publishEvents(updates(2500));
    assert.deepEqual(calls.map((call) => ids(call.body).length), [1000, 1000, 500]);
    assert.equal(calls[0]?.headers["content-type"], "application/cloudevents-batch+json");
    assert.equal(report.accepted, 2500);
    assert.equal(report.ok, true);
    assert.equal(report.sent.length, 2500);
  });
});

describe("publishEvents retries", () => {
  it("retries a 503 after Retry-After with the same body and ids", async () => {
    const { c, calls, sleeps } = client((call, n) =>
      n === 1 ? problem(503, "backlog-full", {}, { "retry-after": "2" }) : accepted(call),
    );
    const events = updates(3);
    const report = await c.publishEvents(events);
    assert.equal(calls.length, 2);
    assert.equal(calls[1]?.body, calls[0]?.body);
    assert.deepEqual(ids(calls[1]?.body), events.map((e) => e.id));
    assert.ok(sleeps[0]! >= 2000);
    assert.deepEqual({ ok: report.ok, accepted: report.accepted, requests: report.requests }, { ok: true, accepted: 3, requests: 2 });
  });

  it("retries network errors with backoff, keeping the ids (the server deduplicates)", async () => {
    const { c, calls, sleeps } = client((call, n) => {
      if (n === 1) throw new TypeError("fetch failed");
      return json({ accepted: 0, duplicates: 2 }, 202); // the first attempt had gone through
    });
    const report = await c.publishEvents(updates(2));
    assert.equal(calls[1]?.body, calls[0]?.body);
    assert.deepEqual(sleeps, [100]); // random 0.5 of the 200 ms base
    assert.deepEqual({ ok: report.ok, accepted: report.accepted, duplicates: report.duplicates }, { ok: true, accepted: 0, duplicates: 2 });
  });

  it("honours a 429's Retry-After", async () => {
    const { c, sleeps } = client((call, n) => (n === 1 ? problem(429, "rate-limited", {}, { "retry-after": "4" }) : accepted(call)));
    const report = await c.publishEvents(updates(1));
    assert.ok(sleeps[0]! >= 4000 && sleeps[0]! <= 4400);
    assert.equal(report.ok, true);
  });

  it("never retries a 422 and reports which events were refused and why", async () => {
    const events = updates(5);
    // The second batch (events 3, 4) is refused: its element 1 (event 4) is named.
    const { c, calls } = client((call, n) =>
      n === 2 ? problem(422, "invalid-events", { errors: [{ index: 1, reasons: ["subject: unknown course"] }] }) : accepted(call),
      { events: { limits: { maxBatch: 3 } } },
    );
    const report = await c.publishEvents(events);
    assert.equal(calls.length, 2);
    assert.equal(report.ok, false);
    assert.deepEqual(report.sent, events.slice(0, 3).map((e) => e.id));
    assert.deepEqual(report.refused, [{ index: 4, id: events[4]?.id, reasons: ["subject: unknown course"], by: "server" }]);
    assert.deepEqual(report.failed.map((f) => [f.index, f.error.status]), [[3, 422]]);
  });

  it("refuses an invalid event itself and still sends the valid ones", async () => {
    const events = updates(2);
    const broken = { ...courseEvents.courseUpdated({ courseId: "c" }), type: "oneroster.course.renamed" } as unknown as CourseEvent;
    const { c, calls } = client(accepted);
    const report = await c.publishEvents([events[0]!, broken, events[1]!]);
    assert.equal(calls.length, 1);
    assert.deepEqual(ids(calls[0]?.body), [events[0]?.id, events[1]?.id]);
    assert.deepEqual(report.refused, [{ index: 1, id: broken.id, reasons: ["type: oneroster.<entity>.<action>"], by: "client" }]);
  });

  it("reports events as failed once the retries are spent", async () => {
    const { c, calls } = client(() => problem(503, "broker-unavailable", {}, { "retry-after": "1" }), {
      events: { retry: { maxRetries: 2 } },
    });
    const events = updates(2);
    const report = await c.publishEvents(events);
    assert.equal(calls.length, 3);
    assert.equal(report.requests, 3);
    assert.deepEqual(report.failed.map((f) => f.id), events.map((e) => e.id));
    assert.ok(report.failed[0]?.error instanceof Unavailable);
  });

  it("reports a timeout as a network error", async () => {
    const { c } = client(() => new Promise<Response>(() => {}), { timeoutMs: 20, events: { retry: { maxRetries: 0 } } });
    const report = await c.publishEvents(updates(1));
    assert.ok(report.failed[0]?.error instanceof NetworkError);
  });
});
