/**
 * The client's overhead per cached read: p50 of `client.getLesson` (a 304 revalidation answered
 * from its cache) against a bare `fetch` of the same URL, both conditional and unconditional,
 * on a local server that answers like the API (ETag, 304). Prints the numbers; writes nothing.
 *
 * Run: npm run bench   (ITERATIONS=5000 to change the sample size)
 */
import { createServer } from "node:http";
import { performance } from "node:perf_hooks";

import { createClient } from "../src/index.js";

const ITERATIONS = Number(process.env.ITERATIONS ?? "3000");
const WARMUP = 300;

const LESSON = JSON.stringify({
  sourcedId: "lesson-001-01-01",
  slug: "intro-to-ratios",
  title: "Intro to ratios",
  sortOrder: 1,
  unitSlug: "ratios",
  resources: Array.from({ length: 8 }, (_, i) => ({
    componentResourceId: `cr-${i}`,
    resourceId: `res-${i}`,
    slug: `video-${i}`,
    title: `Video ${i}`,
    kind: "video",
    sortOrder: i,
    xp: 5,
    path: `/math/cc-sixth-grade-math/ratios/intro-to-ratios/v/video-${i}`,
  })),
});
const ETAG = '"lesson-etag-1"';

const server = createServer((req, res) => {
  const headers = { etag: ETAG, "x-bundle-generation": "1800000000000", "cache-control": "no-cache" };
  if (req.headers["if-none-match"] === ETAG) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, "content-type": "application/json" }).end(LESSON);
});

async function sample(label: string, read: () => Promise<unknown>): Promise<{ label: string; p50: number; p99: number }> {
  for (let i = 0; i < WARMUP; i++) await read();
  const times: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = performance.now();
    await read();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  return { label, p50: at(0.5) * 1000, p99: at(0.99) * 1000 };
}

await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const address = server.address();
const port = typeof address === "object" && address ? address.port : 0;
const base = `http://127.0.0.1:${port}`;
const url = `${base}/v1/courses/course-001/units/ratios/lessons/intro-to-ratios`;
const client = createClient({ baseUrl: base, token: "bench" });
const auth = { authorization: "Bearer bench", accept: "application/json" };

const results = [
  await sample("bare fetch, 200 + JSON.parse", async () => (await fetch(url, { headers: auth })).json()),
  await sample("bare fetch, If-None-Match -> 304", async () => {
    const answer = await fetch(url, { headers: { ...auth, "if-none-match": ETAG } });
    await answer.arrayBuffer();
  }),
  await sample("client.getLesson, cached (304)", () => client.getLesson("course-001", "ratios", "intro-to-ratios")),
];
server.close();

console.log(`node ${process.version}, ${ITERATIONS} sequential reads each, local server`);
for (const r of results) console.log(`${r.label.padEnd(36)} p50 ${r.p50.toFixed(1).padStart(7)} us   p99 ${r.p99.toFixed(1).padStart(7)} us`);
const [, bare304, cached] = results;
console.log(`client overhead per cached read (p50, vs the bare conditional fetch): ${(cached!.p50 - bare304!.p50).toFixed(1)} us`);
