// The one capture logger of the tests: a real pino logger (so what is captured
// is what pino would write: undefined fields dropped, values JSON-serialized)
// whose lines are parsed into `lines` as they are written, synchronously.
// It serves both the API (pino `Logger`) and the peer transport
// (`TransportLogger`, pino-compatible).
//
// A line is pino's JSON object with two differences from the agent's output:
// `level` is the label ('debug', 'warn', ...) instead of the number, and there
// is no time, pid or hostname. Fields are read as `line['event']`.
import { pino } from 'pino';
import type { Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface LogLine {
  readonly level: LogLevel;
  readonly msg?: string;
  readonly [field: string]: unknown;
}

export type CaptureLogger = Logger & { readonly lines: LogLine[] };

/** A pino logger at `level` (default 'debug') that keeps every line it writes in `.lines`. */
export function captureLogger(level: LogLevel = 'debug'): CaptureLogger {
  const lines: LogLine[] = [];
  const logger = pino(
    { level, base: null, timestamp: false, formatters: { level: (label) => ({ level: label }) } },
    { write(chunk: string) { for (const l of chunk.split('\n')) if (l !== '') lines.push(JSON.parse(l) as LogLine); } },
  );
  return Object.assign(logger, { lines });
}
