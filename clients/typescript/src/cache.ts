/**
 * The validator cache: the last answer and its ETag per URL, least recently used out first,
 * bounded by entries and by the answers' size, so a `304` can hand back the value already parsed.
 */

export interface CacheLimits {
  /** Most URLs kept. */
  readonly maxEntries: number;
  /** Most answer bytes kept (JSON text length); a bigger answer is not kept at all. */
  readonly maxBytes: number;
}

export interface CachedAnswer<T> {
  readonly etag: string;
  readonly value: T;
  readonly bytes: number;
}

export class ValidatorCache {
  readonly #entries = new Map<string, CachedAnswer<unknown>>();
  readonly #limits: CacheLimits;
  #bytes = 0;

  constructor(limits: CacheLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The entry for `url`, now the most recently used. */
  get<T>(url: string): CachedAnswer<T> | undefined {
    const entry = this.#entries.get(url);
    if (entry === undefined) return undefined;
    this.#entries.delete(url);
    this.#entries.set(url, entry);
    return entry as CachedAnswer<T>;
  }

  set<T>(url: string, entry: CachedAnswer<T>): void {
    this.delete(url);
    if (entry.bytes > this.#limits.maxBytes || this.#limits.maxEntries < 1) return;
    this.#entries.set(url, entry);
    this.#bytes += entry.bytes;
    for (const [oldest, old] of this.#entries) {
      if (this.#entries.size <= this.#limits.maxEntries && this.#bytes <= this.#limits.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= old.bytes;
    }
  }

  delete(url: string): void {
    const entry = this.#entries.get(url);
    if (entry === undefined) return;
    this.#entries.delete(url);
    this.#bytes -= entry.bytes;
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
