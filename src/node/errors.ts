// Errors a running node reports to the API layer. `code` is stable and mapped
// to an HTTP status in one table (src/api/errors.ts).
export class NodeError extends Error {
  readonly code: string;
  readonly extra: Readonly<Record<string, unknown>>;
  constructor(code: string, message: string, extra: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NodeError';
    this.code = code;
    this.extra = extra;
  }
}

export function notLeader(leaderName: string | undefined, leaderApiUrl: string | undefined): NodeError {
  if (leaderName === undefined) {
    return new NodeError('no_leader', 'no leader is known right now (an election may be in progress); retry in a moment and check `quorate status`');
  }
  return new NodeError('not_leader', `this node is not the leader; ${leaderName} leads`, {
    leaderName,
    ...(leaderApiUrl ? { leaderApiUrl } : {}),
  });
}
