// The certificates a node serves and when they expire: the node certificate
// from the automatic cluster CA (security.tls "auto", ./tls-auto.ts; also the
// API's with security.apiTls "auto"), and certificate files
// (security.tls.certFile, security.apiTls.certFile). Shown in the status
// (`certificates`), as quorate_certificate_expiry_timestamp_seconds, in the
// QuorateCertificateNearExpiry rule (docs/monitoring/) and by `quorate doctor`.
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { CertificateInfo } from '../api/ports.js';
import type { QuorateConfig } from '../config/index.js';
import type { AutoTls } from './tls-auto.js';

interface Parsed { notAfter: string; subject: string }

function parse(pem: string | Buffer): Parsed {
  const c = new X509Certificate(pem);
  return { notAfter: new Date(c.validTo).toISOString(), subject: c.subject.replace(/\n/g, ', ') };
}

/** Reads certificate files again only when their size or mtime changed. */
export class CertificateWatch {
  readonly #config: Pick<QuorateConfig, 'security'>;
  readonly #auto: () => AutoTls | undefined;
  readonly #files = new Map<string, { stamp: string; parsed: Parsed | { error: string } }>();
  #autoSeen: unknown;
  #autoParsed: Parsed | undefined;

  constructor(config: Pick<QuorateConfig, 'security'>, auto: () => AutoTls | undefined) {
    this.#config = config;
    this.#auto = auto;
  }

  #file(path: string): Parsed | { error: string } {
    let stamp: string;
    try {
      const s = statSync(path);
      stamp = `${s.size}:${s.mtimeMs}`;
    } catch (e) {
      return { error: `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
    }
    const hit = this.#files.get(path);
    if (hit?.stamp === stamp) return hit.parsed;
    let parsed: Parsed | { error: string };
    try {
      parsed = parse(readFileSync(path));
    } catch (e) {
      parsed = { error: `${path} holds no readable PEM certificate: ${(e as Error).message}` };
    }
    this.#files.set(path, { stamp, parsed });
    return parsed;
  }

  /** Every certificate this node serves, with its expiry. */
  list(): CertificateInfo[] {
    const out: CertificateInfo[] = [];
    const sec = this.#config.security;
    const add = (cert: CertificateInfo['cert'], source: CertificateInfo['source'], file: string | null, p: Parsed | { error: string }, renewPeriodSeconds?: number): void => {
      out.push({ cert, source, file, ...('error' in p ? { notAfter: null, subject: null, error: p.error } : { notAfter: p.notAfter, subject: p.subject }), ...(renewPeriodSeconds !== undefined ? { renewPeriodSeconds } : {}) });
    };
    const auto = sec.tls === 'auto' ? this.#auto() : undefined;
    if (auto !== undefined) {
      const m = auto.material();
      if (m !== this.#autoSeen) {
        this.#autoSeen = m;
        try {
          this.#autoParsed = parse(m.cert);
        } catch {
          this.#autoParsed = undefined;
        }
      }
      if (this.#autoParsed !== undefined) add(sec.apiTls === 'auto' ? 'peer+api' : 'peer', 'auto', null, this.#autoParsed, sec.caRotationSeconds);
    }
    if (typeof sec.tls === 'object') add('peer', 'file', sec.tls.certFile, this.#file(sec.tls.certFile));
    if (typeof sec.apiTls === 'object') add('api', 'file', sec.apiTls.certFile, this.#file(sec.apiTls.certFile));
    return out;
  }
}
