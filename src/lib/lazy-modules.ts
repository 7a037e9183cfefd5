// Dependencies a node needs only for some configurations, loaded at their
// first use instead of at start: ioredis (Redis lease, mirror, witness), pg
// (external PostgreSQL) and @peculiar/x509 (the cluster CA, TLS "auto"); and
// prom-client's parts, each when it is first used.
// Imported at start, the three took about 1 s of a node's start on a loaded
// 2-core machine and about 40 MB of its resident memory, for a node that uses
// none of them (the default: local storage, TLS off). All three are CommonJS,
// so a synchronous require keeps their callers synchronous.
import { createRequire } from 'node:module';
import { webcrypto } from 'node:crypto';
import type * as IoRedis from 'ioredis';
import type * as Pg from 'pg';
import type * as X509 from '@peculiar/x509';
import type * as Prom from 'prom-client';
import './reflect-shim.js';

const requireCjs = createRequire(import.meta.url);
let ioredis: typeof IoRedis | undefined;
let pg: typeof Pg | undefined;
let x509: typeof X509 | undefined;

export function ioredisModule(): typeof IoRedis {
  return (ioredis ??= requireCjs('ioredis') as typeof IoRedis);
}

export function pgModule(): typeof Pg {
  return (pg ??= requireCjs('pg') as typeof Pg);
}

/** @peculiar/x509 with Node's webcrypto as its provider (reflect-shim is loaded first, as tsyringe needs). */
export function x509Module(): typeof X509 {
  if (x509 === undefined) {
    const m = requireCjs('@peculiar/x509') as typeof X509;
    m.cryptoProvider.set(webcrypto as unknown as Parameters<typeof m.cryptoProvider.set>[0]);
    x509 = m;
  }
  return x509;
}

/** The prom-client classes src/ops/metrics.ts uses. */
export type PromClasses = Pick<typeof Prom, 'Registry' | 'Counter' | 'Gauge' | 'Histogram'>;
let prom: PromClasses | undefined;

/**
 * prom-client's Registry, Counter, Gauge and Histogram, each from its own file.
 * The package's index also loads the Summary (tdigest), the Pushgateway (http,
 * https, zlib), the cluster aggregator and the default process metrics: about
 * 40 ms of CPU at every start against 3 ms. prom-client has no `exports` map,
 * so these paths are reachable; a test checks they are the index's classes.
 */
export function promClasses(): PromClasses {
  return (prom ??= {
    Registry: requireCjs('prom-client/lib/registry') as typeof Prom.Registry,
    Counter: requireCjs('prom-client/lib/counter') as typeof Prom.Counter,
    Gauge: requireCjs('prom-client/lib/gauge') as typeof Prom.Gauge,
    Histogram: requireCjs('prom-client/lib/histogram') as typeof Prom.Histogram,
  });
}

/** prom-client's default process metrics (about 30 ms to load), at the first scrape that renders them. */
export function promDefaultMetrics(): typeof Prom.collectDefaultMetrics {
  return requireCjs('prom-client/lib/defaultMetrics') as typeof Prom.collectDefaultMetrics;
}
