/** Identical concurrent calls share one promise: the first caller's work, everyone's answer. */
export class SingleFlight {
  readonly #inflight = new Map<string, Promise<unknown>>();

  /** Calls in flight now (for tests and diagnostics). */
  get size(): number {
    return this.#inflight.size;
  }

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const running = this.#inflight.get(key);
    if (running !== undefined) return running as Promise<T>;
    const started = work().finally(() => {
      this.#inflight.delete(key);
    });
    this.#inflight.set(key, started);
    return started;
  }
}
