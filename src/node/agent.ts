// `quorate agent`: run one node (storage, consensus, transport, HTTP API) until
// SIGTERM/SIGINT, then shut down cleanly (flush, close connections, exit 0).
// A node whose HTTP API cannot start (address in use, unreadable TLS files)
// does not run on without it: it stops the node and exits 1, naming the key.
import pino from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { ApiStartError, startApiServer } from '../api/server.js';
import type { ApiServer } from '../api/server.js';
import { NodeHost } from './node-host.js';
import { autoApiTlsFiles, trustClusterCa } from './tls-auto.js';
import { awaitEnrollment, enrolledWith } from './join-agent.js';
import { LogRing } from './log-ring.js';
import { startMemoryGovernor } from '../lib/memory-governor.js';
import { alertSecretOf, opsFor } from './ops-wiring.js';

export async function runAgent(config: QuorateConfig, opts: { configPath: string; joinToken?: string }): Promise<void> {
  // Every line carries the node's current term once the node is up.
  let currentTerm: () => number | undefined = () => undefined;
  // The newest lines are also kept in memory for the diagnostic bundle (./log-ring.ts).
  const logs = new LogRing();
  const logger = pino({
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: () => {
      const term = currentTerm();
      return term === undefined ? {} : { term };
    },
  }, pino.multistream([{ stream: pino.destination({ dest: 1, sync: true }) }, { stream: logs }]));
  logger.info({ event: 'agent_starting', node: config.node.nodeName, config: opts.configPath }, `starting quorate node ${config.node.nodeName}`);
  let host: NodeHost;
  let alertSecret: string | undefined;
  try {
    alertSecret = alertSecretOf(config);
    // A join token: wait to be enrolled first (unless this data dir already was, with this token).
    if (opts.joinToken !== undefined && !enrolledWith(config.node.dataDir, opts.joinToken)) await awaitEnrollment(config, logger, opts.joinToken);
    // The host restarts the node in place for a DR promotion (./node-host.ts); the API serves the current one.
    host = await NodeHost.start(config, logger, (e) => {
      logger.fatal({ event: 'agent_exit', node: config.node.nodeName, err: e.message }, `exiting after a fatal error: ${e.message}`);
      logger.flush();
      process.exit(1);
    });
  } catch (e) {
    logger.fatal({ event: 'start_failed', node: config.node.nodeName, err: (e as Error).message }, `cannot start: ${(e as Error).message}`);
    logger.flush();
    throw e;
  }
  currentTerm = () => host.node.term;
  const ops = opsFor(config, host, logger, { alertSecret, logs });
  const api = config.node.apiAddress;
  const sep = api.lastIndexOf(':');
  // security.apiTls "auto": this daemon's own calls to other nodes' APIs (forwarding, audit, probes, health) trust the cluster CA.
  const trustCa = config.security.apiTls === 'auto' ? trustClusterCa(() => host.node.autoTls) : undefined;
  let server: ApiServer;
  try {
    server = await startApiServer({
      cluster: host.cluster,
      kv: host.kv,
      dr: host.dr,
      coord: host.coord,
      security: host.security,
      sql: host.sql,
      ops: ops.ops,
      drills: host.drills,
      files: host.files,
      host: api.slice(0, sep).replace(/^\[|\]$/g, ''),
      port: Number(api.slice(sep + 1)),
      dataDir: config.node.dataDir,
      adminTokenFile: config.security.adminTokenFile,
      limits: { streamIdleTimeoutMs: config.files.uploadIdleTimeoutMs },
      logger: logger.child({ node: config.node.nodeName }),
      ...(config.security.apiTls === 'auto' ? { tls: autoApiTlsFiles(config) } : config.security.apiTls ? { tls: config.security.apiTls } : {}),
      ...(trustCa !== undefined ? { trustCa } : {}),
    });
  } catch (e) {
    // A node without its API cannot be managed, forwarded to or health-checked:
    // stop it cleanly and exit non-zero instead of running on as a bare Raft member.
    const message = (e as Error).message;
    const key = e instanceof ApiStartError ? e.key : 'node.apiAddress';
    logger.fatal(
      { event: 'api_start_failed', node: config.node.nodeName, key, apiAddress: api, err: message },
      `the HTTP API cannot start: ${message}; stopping the node and exiting`,
    );
    try {
      await host.node.stop();
    } catch (stopErr) {
      logger.error({ event: 'stop_failed', node: config.node.nodeName, err: (stopErr as Error).message }, `error while stopping the node: ${(stopErr as Error).message}`);
    }
    logger.info({ event: 'agent_exit', node: config.node.nodeName, code: 1 }, 'node stopped; exiting with code 1');
    logger.flush();
    process.stderr.write(`Error: the HTTP API cannot start: ${message}\nHint: fix ${key} in ${opts.configPath} (docs/configuration.md), then start the node again.\n`);
    process.exit(1);
  }
  // security.apiTls "auto": the API follows the node's certificate renewals (./tls-auto.ts) at once: after a CA
  // rotation the other members stop trusting the old root as soon as every member has its new certificate, and an
  // API still serving the old one for a moment fails their forwarded requests (UNABLE_TO_VERIFY_LEAF_SIGNATURE).
  // Also checked every second: a DR promotion replaces the node (and its AutoTls) under the API.
  if (config.security.apiTls === 'auto') {
    let served = host.node.autoTls?.material();
    let subscribed: unknown;
    const follow = (): void => {
      const tls = host.node.autoTls;
      if (tls !== undefined && tls !== subscribed) {
        subscribed = tls;
        tls.onMaterial(() => follow());
      }
      const m = tls?.material();
      if (m === undefined || m === served) return;
      served = m;
      try {
        server.setTlsCertificate(m);
      } catch (e) {
        logger.error({ event: 'api_tls_certificate_failed', err: (e as Error).message }, `could not serve the renewed certificate: ${(e as Error).message}`);
      }
    };
    follow();
    setInterval(follow, 1000).unref();
  }
  logger.info({ event: 'api_listening', node: config.node.nodeName, url: config.node.advertiseApiUrl }, `API listening on ${config.node.advertiseApiUrl}`);
  // Dead chunk Buffers of uploads and snapshot streams are collected early (src/lib/memory-governor.ts).
  if (startMemoryGovernor() === undefined) logger.warn({ event: 'memory_governor_unavailable' }, 'this runtime does not allow collecting garbage on demand; large uploads may grow memory by up to 64 MiB more per node');
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'agent_stopping', node: config.node.nodeName, signal }, `received ${signal}; shutting down`);
      void (async () => {
        await server.close().catch(() => undefined);
        await ops.stop();
        await host.node.stop();
        logger.flush();
        resolve();
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
