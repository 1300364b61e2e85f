import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { BundleNotInScope, bundleScopeFor, createBundleScope, findLesson, findResourcePlacements, type Bundle, type BundleReader } from "../../src/index.js";
import { BUNDLE } from "../support/stub.js";

function reader(fail = 0): BundleReader & { reads: string[] } {
  const reads: string[] = [];
  let failures = fail;
  return {
    reads,
    getBundle: async (courseId: string) => {
      reads.push(`id:${courseId}`);
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (failures-- > 0) throw new Error("boom");
      return { ...BUNDLE, courseId } as Bundle;
    },
    getBundleBySlug: async (slug: string) => {
      reads.push(`slug:${slug}`);
      return BUNDLE as Bundle;
    },
  };
}

describe("request scope", () => {
  it("reads a course's bundle once however many loaders ask", async () => {
    const client = reader();
    const scope = createBundleScope(client);
    const loaders = await Promise.all(Array.from({ length: 5 }, () => scope.getBundle("course-1")));
    await scope.getBundle("course-1");
    assert.deepEqual(client.reads, ["id:course-1"]);
    assert.ok(loaders.every((b) => b === loaders[0]));
    assert.equal(scope.requireBundle("course-1"), loaders[0]);
  });

  it("uses a bundle in scope for its slug", async () => {
    const client = reader();
    const scope = createBundleScope(client);
    await scope.getBundle("course-1");
    await scope.getBundleBySlug("algebra");
    assert.deepEqual(client.reads, ["id:course-1"]);
  });

  it("requireBundle throws for a course nobody read, and works after stashBundle", () => {
    const scope = createBundleScope(reader());
    assert.throws(() => scope.requireBundle("course-1"), BundleNotInScope);
    scope.stashBundle(BUNDLE as Bundle);
    assert.equal(scope.requireBundle("course-1"), BUNDLE);
  });

  it("does not keep a failed read: the next loader tries again", async () => {
    const client = reader(1);
    const scope = createBundleScope(client);
    await assert.rejects(scope.getBundle("course-1"));
    assert.equal((await scope.getBundle("course-1")).courseId, "course-1");
    assert.equal(client.reads.length, 2);
  });

  it("keeps one scope per request object and a new one for the next request", async () => {
    const client = reader();
    const first = {};
    await bundleScopeFor(first, client).getBundle("course-1");
    await bundleScopeFor(first, client).getBundle("course-1");
    await bundleScopeFor({}, client).getBundle("course-1");
    assert.deepEqual(client.reads, ["id:course-1", "id:course-1"]);
  });

  it("finds units, lessons and resources inside the bundle", () => {
    const bundle = BUNDLE as Bundle;
    assert.equal(findLesson(bundle, "u0", "l0")?.title, "Lesson 0");
    assert.equal(findLesson(bundle, "u0", "nope"), undefined);
    const [placed] = findResourcePlacements(bundle, "r1");
    assert.equal(placed?.lesson?.slug, "l0");
  });
});
