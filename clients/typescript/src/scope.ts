/**
 * One bundle read per server request, however many loaders ask: a request scope memoises each
 * course's bundle (`getBundle`, `getBundleBySlug`) and keeps it for synchronous use
 * (`stashBundle` / `requireBundle`). Next.js: wrap `createBundleScope` in React's `cache()`.
 */
import type { Bundle, CourseBundlesClient } from "./client.js";

export type BundleReader = Pick<CourseBundlesClient, "getBundle" | "getBundleBySlug">;

/** `requireBundle` for a course no loader of this request has read or stashed: a programming error. */
export class BundleNotInScope extends Error {
  readonly courseId: string;

  constructor(courseId: string) {
    super(`no bundle for course ${courseId} in this request scope: read it with getBundle first`);
    this.name = "BundleNotInScope";
    this.courseId = courseId;
  }
}

export interface BundleScope {
  /** The course's bundle: read once for this scope, then the same promise. */
  getBundle(courseId: string): Promise<Bundle>;
  /** The bundle by slug: a bundle already in scope with that slug is used, else read once. */
  getBundleBySlug(courseSlug: string): Promise<Bundle>;
  /** Keep a bundle read elsewhere, for `requireBundle` and later `getBundle` calls. */
  stashBundle(bundle: Bundle): Bundle;
  /** The bundle a loader of this scope already has; throws `BundleNotInScope` otherwise. */
  requireBundle(courseId: string): Bundle;
  /** The bundle if one is in scope. */
  peekBundle(courseId: string): Bundle | undefined;
}

export function createBundleScope(client: BundleReader): BundleScope {
  const bundles = new Map<string, Bundle>();
  const byId = new Map<string, Promise<Bundle>>();
  const bySlug = new Map<string, Promise<Bundle>>();

  const stash = (bundle: Bundle): Bundle => {
    bundles.set(bundle.courseId, bundle);
    if (!byId.has(bundle.courseId)) byId.set(bundle.courseId, Promise.resolve(bundle));
    return bundle;
  };
  // A failed read is not kept: another loader of the same request may try again.
  const remember = (memo: Map<string, Promise<Bundle>>, key: string, read: () => Promise<Bundle>): Promise<Bundle> => {
    const known = memo.get(key);
    if (known !== undefined) return known;
    const pending = read().then(stash, (error: unknown) => {
      memo.delete(key);
      throw error;
    });
    memo.set(key, pending);
    return pending;
  };

  return {
    getBundle: (courseId) => remember(byId, courseId, () => client.getBundle(courseId)),
    getBundleBySlug: (courseSlug) => {
      for (const bundle of bundles.values()) {
        if (bundle.course.slug === courseSlug) return Promise.resolve(bundle);
      }
      return remember(bySlug, courseSlug, () => client.getBundleBySlug(courseSlug));
    },
    stashBundle: stash,
    requireBundle: (courseId) => {
      const bundle = bundles.get(courseId);
      if (bundle === undefined) throw new BundleNotInScope(courseId);
      return bundle;
    },
    peekBundle: (courseId) => bundles.get(courseId),
  };
}

const scopes = new WeakMap<object, BundleScope>();

/** The scope of one request object (the seed's `WeakMap` pattern), made on first use. */
export function bundleScopeFor(request: object, client: BundleReader): BundleScope {
  let scope = scopes.get(request);
  if (scope === undefined) {
    scope = createBundleScope(client);
    scopes.set(request, scope);
  }
  return scope;
}
