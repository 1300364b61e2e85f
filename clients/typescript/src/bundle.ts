/** Lookups inside a bundle already in hand, so loaders sharing a scope need no further reads. */
import type { Bundle, Lesson, Resource, Unit } from "./client.js";

export function findUnit(bundle: Bundle, unitSlug: string): Unit | undefined {
  return bundle.units.find((unit) => unit.slug === unitSlug);
}

export function findLesson(bundle: Bundle, unitSlug: string, lessonSlug: string): Lesson | undefined {
  return findUnit(bundle, unitSlug)?.lessons.find((lesson) => lesson.slug === lessonSlug);
}

export interface PlacedResource {
  readonly resource: Resource;
  /** Both undefined for the course challenge. */
  readonly unit: Unit | undefined;
  readonly lesson: Lesson | undefined;
}

/** Every place the resource sits in the course (usually one), in bundle order. */
export function findResourcePlacements(bundle: Bundle, resourceId: string): PlacedResource[] {
  const found: PlacedResource[] = [];
  for (const unit of bundle.units) {
    for (const lesson of unit.lessons) {
      for (const resource of lesson.resources) {
        if (resource.resourceId === resourceId) found.push({ resource, unit, lesson });
      }
    }
  }
  const challenge = bundle.courseChallenge;
  if (challenge && challenge.resourceId === resourceId) {
    found.push({ resource: challenge, unit: undefined, lesson: undefined });
  }
  return found;
}
