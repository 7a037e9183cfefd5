// `quorate agent`: run one node (storage, consensus, transport, HTTP API) until
// SIGTERM/SIGINT, then shut down cleanly (flush, close connections, exit 0).
// A node whose HTTP API cannot start (address in use, unreadable TLS files)
// does not run on without it: it stops the node and exits 1, naming the key.
import pino from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { ApiStartError, startApiServer } from '../api/server.js';
import type { ApiServer } from '../api/server.js';
import { NodeHost } from './node-host.js';
import { awaitEnrollment, enrolledWith } from './join-agent.js';

export async function runAgent(config: QuorateConfig, opts: { configPath: string; joinToken?: string }): Promise<void> {
  // Every line carries the node's current term once the node is up.
  let currentTerm: () => number | undefined = () => undefined;
  const logger = pino({
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: () => {
      const term = currentTerm();
      return term === undefined ? {} : { term };
    },
  });
  logger.info({ event: 'agent_starting', node: config.node.nodeName, config: opts.configPath }, `starting quorate node ${config.node.nodeName}`);
  let host: NodeHost;
  try {
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
  const api = config.node.apiAddress;
  const sep = api.lastIndexOf(':');
  let server: ApiServer;
  try {
    server = await startApiServer({
      cluster: host.cluster,
      kv: host.kv,
      dr: host.dr,
      coord: host.coord,
      security: host.security,
      sql: host.sql,
      files: host.files,
      host: api.slice(0, sep).replace(/^\[|\]$/g, ''),
      port: Number(api.slice(sep + 1)),
      dataDir: config.node.dataDir,
      adminTokenFile: config.security.adminTokenFile,
      logger: logger.child({ node: config.node.nodeName }),
      ...(config.security.apiTls ? { tls: config.security.apiTls } : {}),
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
  logger.info({ event: 'api_listening', node: config.node.nodeName, url: config.node.advertiseApiUrl }, `API listening on ${config.node.advertiseApiUrl}`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'agent_stopping', node: config.node.nodeName, signal }, `received ${signal}; shutting down`);
      void (async () => {
        await server.close().catch(() => undefined);
        await host.node.stop();
        logger.flush();
        resolve();
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
