/** A stubbed `fetch` that records every request, and a runtime whose sleeps are virtual. */
import type { Runtime } from "../../src/transport.js";

export interface Call {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

export type Handler = (call: Call, n: number) => Response | Promise<Response>;

export interface Stub {
  readonly fetch: typeof fetch;
  readonly calls: Call[];
}

export function stubFetch(handler: Handler): Stub {
  const calls: Call[] = [];
  const fake = (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const call: Call = {
      method: init?.method ?? "GET",
      url: String(input),
      headers,
      body: typeof init?.body === "string" ? init.body : undefined,
    };
    calls.push(call);
    // Answer on a later tick, as a real server would: concurrent callers are all waiting by then.
    await new Promise((resolve) => setTimeout(resolve, 1));
    const n = calls.length;
    const signal = init?.signal;
    // Like a real fetch: an aborted signal rejects, and a pending request keeps the process alive.
    const alive = setInterval(() => {}, 1000);
    try {
      return await new Promise<Response>((resolve, reject) => {
        signal?.addEventListener("abort", () => reject(signal.reason));
        Promise.resolve()
          .then(() => handler(call, n))
          .then(resolve, reject);
      });
    } finally {
      clearInterval(alive);
    }
  }) as typeof fetch;
  return { fetch: fake, calls };
}

export interface VirtualTime extends Partial<Runtime> {
  readonly sleeps: number[];
}

/** `sleep` advances a virtual clock at once and records the wait; `random` is fixed. */
export function virtualTime(random = 0.5): VirtualTime & Pick<Runtime, "sleep" | "now" | "random"> {
  let clock = 1_000_000;
  const sleeps: number[] = [];
  return {
    sleeps,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      clock += ms;
    },
    now: () => clock,
    random: () => random,
  };
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export function problem(
  status: number,
  name: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  const body = { type: `urn:course-bundles:problem:${name}`, title: "t", status, detail: `${name} detail`, ...extra };
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}

export const BUNDLE = {
  schemaVersion: 1,
  courseId: "course-1",
  generation: 7,
  builtAt: "2026-11-22T10:15:03.420Z",
  course: { sourcedId: "course-1", slug: "algebra", title: "Algebra", subject: "math" },
  units: [
    {
      sourcedId: "u0",
      slug: "u0",
      title: "Unit 0",
      sortOrder: 0,
      lessons: [
        {
          sourcedId: "l0",
          slug: "l0",
          title: "Lesson 0",
          sortOrder: 0,
          resources: [
            {
              componentResourceId: "cr1",
              resourceId: "r1",
              slug: "v1",
              title: "Video",
              kind: "video",
              sortOrder: 1,
              xp: 5,
              path: "/math/algebra/u0/l0/v/v1",
            },
          ],
        },
      ],
    },
  ],
  courseChallenge: null,
  totals: { units: 1, lessons: 1, resources: 1, xp: 5 },
  skipped: 0,
};
