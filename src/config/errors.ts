// The one error the config loader throws. `code` is stable ('invalid_config');
// `issues` lists every problem found, each naming its key path (or the
// environment variable that introduced it).

export interface ConfigIssue {
  /** Dotted key path, e.g. "cluster.electionTimeoutMs" ("" for the whole file). */
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = 'invalid_config' as const;
  readonly issues: readonly ConfigIssue[];
  /** The first issue's key path: what to fix first. */
  readonly path: string;

  constructor(issues: readonly ConfigIssue[], options?: { cause?: unknown; source?: string }) {
    const lines = issues.map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`));
    const where = options?.source !== undefined ? `${options.source}: ` : '';
    super(where + (lines.length === 1 ? (lines[0] ?? '') : `${lines.length} problems:\n  ${lines.join('\n  ')}`),
      options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ConfigError';
    this.issues = issues;
    this.path = issues[0]?.path ?? '';
  }
}
