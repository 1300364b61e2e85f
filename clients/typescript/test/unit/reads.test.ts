import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  Conflict,
  createClient,
  Forbidden,
  InvalidRequest,
  NotFound,
  RateLimited,
  responseMeta,
  Unauthorized,
  Unavailable,
  UnexpectedResponse,
  UpstreamError,
  type ClientOptions,
} from "../../src/index.js";
import { BUNDLE, json, problem, stubFetch, virtualTime, type Handler } from "../support/stub.js";

const BASE = "http://api.test";

function client(handler: Handler, options: Partial<ClientOptions> = {}) {
  const stub = stubFetch(handler);
  const time = virtualTime();
  const c = createClient({ baseUrl: `${BASE}/`, token: "tok", fetch: stub.fetch, runtime: time, ...options });
  return { c, calls: stub.calls, sleeps: time.sleeps };
}

const bundleAnswer = (etag = '"e1"') =>
  json(BUNDLE, 200, { etag, "x-bundle-generation": "7", "x-bundle-built-at": BUNDLE.builtAt });

describe("reads", () => {
  it("shares one request among 20 identical concurrent reads", async () => {
    const { c, calls } = client(() => bundleAnswer());
    const results = await Promise.all(Array.from({ length: 20 }, () => c.getBundle("course-1")));
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.url, `${BASE}/v1/courses/course-1/bundle`);
    assert.equal(calls[0]?.headers.authorization, "Bearer tok");
    for (const result of results) assert.equal(result, results[0]);
    assert.deepEqual(results[0], BUNDLE);
  });

  it("keeps different URLs apart", async () => {
    const { c, calls } = client(() => bundleAnswer());
    await Promise.all([c.getBundle("course-1"), c.getBundle("course-2"), c.getUnit("course-1", "u0")]);
    assert.deepEqual(
      calls.map((call) => call.url).sort(),
      [`${BASE}/v1/courses/course-1/bundle`, `${BASE}/v1/courses/course-1/units/u0`, `${BASE}/v1/courses/course-2/bundle`],
    );
  });

  it("revalidates with If-None-Match and returns the cached value on 304", async () => {
    const { c, calls } = client((call) =>
      call.headers["if-none-match"] === '"e1"' ? new Response(null, { status: 304, headers: { etag: '"e1"' } }) : bundleAnswer(),
    );
    const first = await c.getBundle("course-1");
    const second = await c.getBundle("course-1");
    assert.equal(calls.length, 2);
    assert.equal(calls[0]?.headers["if-none-match"], undefined);
    assert.equal(calls[1]?.headers["if-none-match"], '"e1"');
    assert.equal(second, first);
    assert.deepEqual(second, BUNDLE);
  });

  it("replaces the cached value when the ETag changed", async () => {
    let generation = 7;
    const { c } = client(() => json({ ...BUNDLE, generation }, 200, { etag: `"g${generation}"` }));
    assert.equal((await c.getBundle("course-1")).generation, 7);
    generation = 8;
    assert.equal((await c.getBundle("course-1")).generation, 8);
  });

  it("keeps at most maxEntries answers, least recently used out first", async () => {
    const { c, calls } = client((call) =>
      call.headers["if-none-match"] ? new Response(null, { status: 304 }) : bundleAnswer(`"${call.url}"`),
      { cache: { maxEntries: 2 } },
    );
    await c.getBundle("a");
    await c.getBundle("b");
    await c.getBundle("a"); // a is now the most recent
    await c.getBundle("c"); // evicts b
    await c.getBundle("b");
    const b = calls.filter((call) => call.url.endsWith("/b/bundle"));
    assert.equal(b.length, 2);
    assert.equal(b[1]?.headers["if-none-match"], undefined);
    const a = calls.filter((call) => call.url.endsWith("/a/bundle"));
    assert.equal(a[1]?.headers["if-none-match"], `"${BASE}/v1/courses/a/bundle"`);
  });

  it("does not cache at all with cache: false", async () => {
    const { c, calls } = client(() => bundleAnswer(), { cache: false });
    await c.getBundle("course-1");
    await c.getBundle("course-1");
    assert.equal(calls[1]?.headers["if-none-match"], undefined);
  });

  it("hands out frozen values, so one caller cannot change what another sees", async () => {
    const { c } = client(() => bundleAnswer());
    const bundle = await c.getBundle("course-1");
    assert.throws(() => {
      (bundle.units as unknown[]).pop();
    }, TypeError);
  });

  it("exposes the bundle headers through responseMeta", async () => {
    const { c } = client(() => json(BUNDLE, 200, { etag: '"e1"', "x-bundle-generation": "1800000000001", "x-bundle-stale": "true" }));
    const bundle = await c.getBundle("course-1");
    assert.deepEqual(
      { ...responseMeta(bundle), requestId: undefined },
      { etag: '"e1"', generation: 1800000000001, builtAt: undefined, stale: true, requestId: undefined },
    );
  });

  it("updates responseMeta from a 304, keeping the cached ETag when the 304 has none", async () => {
    const { c } = client((call) =>
      call.headers["if-none-match"] ? new Response(null, { status: 304, headers: { "x-bundle-stale": "true", "x-bundle-generation": "7" } }) : bundleAnswer(),
    );
    const first = await c.getBundle("course-1");
    assert.equal(responseMeta(first)?.stale, false);
    const second = await c.getBundle("course-1");
    assert.equal(second, first);
    assert.deepEqual([responseMeta(second)?.stale, responseMeta(second)?.etag, responseMeta(second)?.generation], [true, '"e1"', 7]);
  });

  it("encodes path parameters and builds the redirect query", async () => {
    const { c, calls } = client(() => json({ path: "/math/algebra/u0/l0/quiz/q" }, 200, { etag: '"r"' }));
    await c.getLesson("course 1", "u/0", "l?0");
    assert.equal(calls[0]?.url, `${BASE}/v1/courses/course%201/units/u%2F0/lessons/l%3F0`);
    const path = await c.quizPath({ subject: "math", course: "algebra", unit: "u0", slug: "q" });
    assert.equal(path, "/math/algebra/u0/l0/quiz/q");
    assert.equal(calls[1]?.url, `${BASE}/v1/redirects/assessment?subject=math&course=algebra&kind=quiz&slug=q&unit=u0`);
    await c.courseChallengePath({ subject: "math", course: "algebra", slug: "ch" });
    assert.equal(calls[2]?.url, `${BASE}/v1/redirects/assessment?subject=math&course=algebra&kind=course-challenge&slug=ch`);
  });

  it("asks for a token per request when given a function", async () => {
    let n = 0;
    const { c, calls } = client(() => bundleAnswer(), { token: async () => `t${++n}`, cache: false });
    await c.getBundle("a");
    await c.getBundle("a");
    assert.deepEqual(calls.map((call) => call.headers.authorization), ["Bearer t1", "Bearer t2"]);
  });
});

describe("Retry-After", () => {
  it("waits as long as the 503 says, then answers", async () => {
    const { c, calls, sleeps } = client((_, n) =>
      n === 1 ? problem(503, "upstream-unavailable", {}, { "retry-after": "2" }) : bundleAnswer(),
    );
    const bundle = await c.getBundle("course-1");
    assert.equal(bundle.courseId, "course-1");
    assert.equal(calls.length, 2);
    assert.equal(sleeps.length, 1);
    assert.ok(sleeps[0]! >= 2000 && sleeps[0]! <= 2200, `slept ${sleeps[0]}`);
  });

  it("gives up after maxRetries with the typed error", async () => {
    const { c, calls } = client(() => problem(503, "store-unavailable", {}, { "retry-after": "1" }), {
      retry: { maxRetries: 2 },
    });
    const error = await c.getBundle("course-1").catch((e: unknown) => e);
    assert.ok(error instanceof Unavailable);
    assert.equal(error.retryAfterMs, 1000);
    assert.equal(error.problemType, "store-unavailable");
    assert.equal(calls.length, 3);
  });

  it("does not start a retry that would end past the deadline", async () => {
    const { c, calls, sleeps } = client(() => problem(503, "upstream-unavailable", {}, { "retry-after": "30" }), {
      retry: { deadlineMs: 10_000 },
    });
    await assert.rejects(c.getBundle("course-1"), Unavailable);
    assert.equal(calls.length, 1);
    assert.deepEqual(sleeps, []);
  });

  it("retries a 429 on a cold build after its Retry-After", async () => {
    const { c, sleeps } = client((_, n) => (n === 1 ? problem(429, "rate-limited", {}, { "retry-after": "3" }) : bundleAnswer()));
    await c.getBundle("course-1");
    assert.ok(sleeps[0]! >= 3000);
  });

  it("retries network errors with a bounded backoff", async () => {
    const { c, calls, sleeps } = client((_, n) => {
      if (n < 3) throw new TypeError("fetch failed");
      return bundleAnswer();
    });
    await c.getBundle("course-1");
    assert.equal(calls.length, 3);
    assert.deepEqual(sleeps, [50, 100]); // random 0.5 of 100 ms, 200 ms
  });

  it("never retries a 404", async () => {
    const { c, calls } = client(() => problem(404, "course-not-found"));
    await assert.rejects(c.getBundle("nope"), NotFound);
    assert.equal(calls.length, 1);
  });
});

describe("errors", () => {
  const cases: [Response, new (...args: never[]) => Error, string][] = [
    [problem(401, "unauthorized"), Unauthorized, "unauthorized"],
    [problem(403, "forbidden"), Forbidden, "forbidden"],
    [problem(404, "course-not-found"), NotFound, "course-not-found"],
    [problem(422, "invalid-request", { errors: [{ in: "path", name: "courseId", reason: "bad" }] }), InvalidRequest, "invalid-request"],
    [problem(502, "upstream-error"), UpstreamError, "upstream-error"],
    [problem(503, "bundle-corrupt", {}, { "retry-after": "5" }), Unavailable, "bundle-corrupt"],
    [problem(429, "rate-limited", {}, { "retry-after": "60" }), RateLimited, "rate-limited"],
  ];
  for (const [answer, Type, name] of cases) {
    it(`maps ${answer.status} ${name} to ${Type.name}`, async () => {
      const { c } = client(() => answer.clone(), { retry: { maxRetries: 0 } });
      const error = await c.getBundle("course-1").catch((e: unknown) => e);
      assert.ok(error instanceof Type, String(error));
      assert.equal((error as NotFound).problemType, name);
      assert.equal((error as NotFound).status, answer.status);
    });
  }

  it("keeps the 422's errors", async () => {
    const { c } = client(() => problem(422, "invalid-request", { errors: [{ in: "path", name: "courseId", reason: "bad" }] }));
    const error = await c.getBundle("x").catch((e: unknown) => e);
    assert.ok(error instanceof InvalidRequest);
    assert.deepEqual(error.errors, [{ in: "path", name: "courseId", reason: "bad" }]);
  });

  it("surfaces a 409 redirect's candidates", async () => {
    const candidates = ["/math/algebra/u0/l0/quiz/q", "/math/algebra/u0/l1/quiz/q"];
    const { c } = client(() => problem(409, "ambiguous-redirect", { candidates, requestId: "rid-1" }));
    const error = await c.quizPath({ subject: "math", course: "algebra", unit: "u0", slug: "q" }).catch((e: unknown) => e);
    assert.ok(error instanceof Conflict);
    assert.deepEqual(error.candidates, candidates);
    assert.equal(error.requestId, "rid-1");
  });

  it("surfaces an attempt conflict's active attempt", async () => {
    const { c } = client(() => problem(409, "attempt-conflict", { activeAttempt: 3 }));
    const error = await c.resetAttempt("u1", "r1", 2).catch((e: unknown) => e);
    assert.ok(error instanceof Conflict);
    assert.equal(error.activeAttempt, 3);
  });

  it("calls an HTML 404 an unexpected response", async () => {
    const { c } = client(() => new Response("<html>nope</html>", { status: 404, headers: { "content-type": "text/html" } }));
    await assert.rejects(c.getBundle("course-1"), UnexpectedResponse);
  });

  it("reads no active attempt as null, but an unknown route as NotFound", async () => {
    const none = client(() => problem(404, "no-active-attempt"));
    assert.equal(await none.c.getActiveAttempt("u1", "r1"), null);
    const route = client(() => problem(404, "no-such-route"));
    await assert.rejects(route.c.getActiveAttempt("u1", "r1"), NotFound);
  });

  it("sends attempt calls with their methods", async () => {
    const { c, calls } = client((call) =>
      call.method === "POST" ? json({ attemptNumber: 2, source: "derived", created: true }) : json({ clearedAttempt: 2 }),
    );
    assert.deepEqual(await c.resolveAttempt("u1", "r1"), { attemptNumber: 2, source: "derived", created: true });
    assert.deepEqual(await c.resetAttempt("u1", "r1", 2), { clearedAttempt: 2 });
    assert.deepEqual(
      calls.map((call) => `${call.method} ${call.url}`),
      [`POST ${BASE}/v1/attempts/u1/r1/resolve`, `DELETE ${BASE}/v1/attempts/u1/r1?attempt=2`],
    );
  });
});
