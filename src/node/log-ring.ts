// The newest log lines of this process, kept in memory for the diagnostic
// bundle (./diagnostics.ts): a pino stream beside stdout in `quorate agent`.
// Bounded by lines and bytes; nothing is written to disk.
export class LogRing {
  readonly #maxLines: number;
  readonly #maxBytes: number;
  readonly #lines: string[] = [];
  #bytes = 0;

  constructor(maxLines = 2000, maxBytes = 2 * 1024 * 1024) {
    this.#maxLines = maxLines;
    this.#maxBytes = maxBytes;
  }

  /** pino's stream interface: one serialized line per call. */
  write(line: string): void {
    this.#lines.push(line);
    this.#bytes += line.length;
    while (this.#lines.length > this.#maxLines || (this.#bytes > this.#maxBytes && this.#lines.length > 1)) this.#bytes -= this.#lines.shift()!.length;
  }

  /** The kept lines, oldest first, newline-terminated. */
  text(): string {
    return this.#lines.map((l) => (l.endsWith('\n') ? l : `${l}\n`)).join('');
  }
}
