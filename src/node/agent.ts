// `quorate agent`: run one node (storage, consensus, transport, HTTP API) until
// SIGTERM/SIGINT, then shut down cleanly (flush, close connections, exit 0).
import pino from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { startApiServer } from '../api/server.js';
import { QuorateNode } from './node.js';

export async function runAgent(config: QuorateConfig, opts: { configPath: string }): Promise<void> {
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
  let node: QuorateNode;
  try {
    node = await QuorateNode.start(config, logger, {
      onFatal: (e) => {
        logger.fatal({ event: 'agent_exit', node: config.node.nodeName, err: e.message }, `exiting after a fatal error: ${e.message}`);
        logger.flush();
        process.exit(1);
      },
    });
  } catch (e) {
    logger.fatal({ event: 'start_failed', node: config.node.nodeName, err: (e as Error).message }, `cannot start: ${(e as Error).message}`);
    logger.flush();
    throw e;
  }
  currentTerm = () => node.term;
  const api = config.node.apiAddress;
  const sep = api.lastIndexOf(':');
  const server = await startApiServer({
    node,
    host: api.slice(0, sep).replace(/^\[|\]$/g, ''),
    port: Number(api.slice(sep + 1)),
    dataDir: config.node.dataDir,
    logger: logger.child({ node: config.node.nodeName }),
    ...(config.security.apiTls ? { tls: config.security.apiTls } : {}),
  });
  logger.info({ event: 'api_listening', node: config.node.nodeName, url: config.node.advertiseApiUrl }, `API listening on ${config.node.advertiseApiUrl}`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'agent_stopping', node: config.node.nodeName, signal }, `received ${signal}; shutting down`);
      void (async () => {
        await server.close().catch(() => undefined);
        await node.stop();
        logger.flush();
        resolve();
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
