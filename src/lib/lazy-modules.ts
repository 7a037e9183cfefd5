// Dependencies a node needs only for some configurations, loaded at their
// first use instead of at start: ioredis (Redis lease, mirror, witness), pg
// (external PostgreSQL) and @peculiar/x509 (the cluster CA, TLS "auto").
// Imported at start, the three took about 1 s of a node's start on a loaded
// 2-core machine and about 40 MB of its resident memory, for a node that uses
// none of them (the default: local storage, TLS off). All three are CommonJS,
// so a synchronous require keeps their callers synchronous.
import { createRequire } from 'node:module';
import { webcrypto } from 'node:crypto';
import type * as IoRedis from 'ioredis';
import type * as Pg from 'pg';
import type * as X509 from '@peculiar/x509';
import './reflect-shim.js';

const require = createRequire(import.meta.url);
let ioredis: typeof IoRedis | undefined;
let pg: typeof Pg | undefined;
let x509: typeof X509 | undefined;

export function ioredisModule(): typeof IoRedis {
  return (ioredis ??= require('ioredis') as typeof IoRedis);
}

export function pgModule(): typeof Pg {
  return (pg ??= require('pg') as typeof Pg);
}

/** @peculiar/x509 with Node's webcrypto as its provider (reflect-shim is loaded first, as tsyringe needs). */
export function x509Module(): typeof X509 {
  if (x509 === undefined) {
    const m = require('@peculiar/x509') as typeof X509;
    m.cryptoProvider.set(webcrypto as unknown as Parameters<typeof m.cryptoProvider.set>[0]);
    x509 = m;
  }
  return x509;
}
