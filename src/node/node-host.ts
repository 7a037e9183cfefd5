// The agent's holder of its running QuorateNode. A DR promotion rewrites the
// node's own data dir (./generation.ts), which needs the node stopped: the
// host stops it, runs the rewrite, starts a new QuorateNode on the same data
// dir and ports, and swaps it in. The HTTP API keeps serving throughout: it
// holds the host's views (`cluster`, `kv`, `dr`, `coord`, `security`, `sql`), which always call the current
// node (a request during the swap hits the stopped node and gets 503
// shutting_down, which clients retry).
import type { Logger } from 'pino';
import type { ClusterControl, DrControl, KvService, SqlService } from '../api/ports.js';
import type { AppCoordination } from '../api/ports-app.js';
import type { SecurityPort } from '../api/ports-security.js';
import type { DrillPort } from '../api/ports-drill.js';
import type { FilesService } from '../api/ports-files.js';
import type { QuorateConfig } from '../config/index.js';
import { QuorateNode } from './node.js';
import type { ExternalNode } from '../external/external-node.js';

/** What the host runs: a Raft node, or an external-shared node (src/external/external-node.ts) with the same ports. */
export type HostedNode = QuorateNode | ExternalNode;

async function startNode(config: QuorateConfig, logger: Logger, opts: { onFatal: (e: Error) => void; restart: (rewrite: () => Promise<void>) => Promise<void> }): Promise<HostedNode> {
  if (config.database.mode === 'external-shared') {
    // Loaded only in this mode: src/external and pg are about 60 ms of CPU at every start of a local-sync node.
    const { ExternalNode } = await import('../external/external-node.js');
    return ExternalNode.start(config, logger, { onFatal: opts.onFatal });
  }
  return QuorateNode.start(config, logger, opts);
}

/** A view whose every property is read from the current target (methods bound to it). */
function follow<T extends object>(current: () => T): T {
  return new Proxy({} as T, {
    get: (_t, p) => {
      const target = current();
      const v: unknown = Reflect.get(target, p, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
    has: (_t, p) => Reflect.has(current(), p),
  });
}

export class NodeHost {
  #node: HostedNode;
  readonly #config: QuorateConfig;
  readonly #logger: Logger;
  readonly #onFatal: (e: Error) => void;
  /** What the HTTP API is given: always the current node. */
  readonly cluster: ClusterControl;
  readonly kv: KvService;
  readonly dr: DrControl;
  readonly coord: AppCoordination;
  readonly security: SecurityPort;
  readonly sql: SqlService;
  readonly drills: DrillPort;
  readonly files: FilesService;

  private constructor(node: HostedNode, config: QuorateConfig, logger: Logger, onFatal: (e: Error) => void) {
    this.#node = node;
    this.#config = config;
    this.#logger = logger;
    this.#onFatal = onFatal;
    this.cluster = follow<ClusterControl>(() => this.#node);
    this.kv = follow<KvService>(() => this.#node.kvService);
    this.dr = follow<DrControl>(() => this.#node);
    this.coord = follow<AppCoordination>(() => this.#node.appServices);
    this.security = follow<SecurityPort>(() => this.#node.security);
    this.sql = follow<SqlService>(() => this.#node.sqlService);
    this.drills = follow<DrillPort>(() => this.#node.drills);
    this.files = follow<FilesService>(() => this.#node.filesService);
  }

  static async start(config: QuorateConfig, logger: Logger, onFatal: (e: Error) => void): Promise<NodeHost> {
    const ref: { host?: NodeHost } = {};
    const restart = (rewrite: () => Promise<void>): Promise<void> => ref.host!.#restartWith(rewrite);
    const node = await startNode(config, logger, { onFatal, restart });
    ref.host = new NodeHost(node, config, logger, onFatal);
    return ref.host;
  }

  get node(): HostedNode {
    return this.#node;
  }

  async #restartWith(rewrite: () => Promise<void>): Promise<void> {
    const name = this.#config.node.nodeName;
    this.#logger.warn({ node: name, event: 'node_restarting' }, `${name}: stopping the node to rewrite its data dir, then starting it again (the API stays up)`);
    await this.#node.stop();
    let failed: Error | undefined;
    try {
      await rewrite();
    } catch (e) {
      failed = e as Error;
      this.#logger.error({ node: name, event: 'rewrite_failed', err: failed.message }, `the rewrite failed (${failed.message}); starting the node again unchanged`);
    }
    try {
      this.#node = await startNode(this.#config, this.#logger, { onFatal: this.#onFatal, restart: (r) => this.#restartWith(r) });
    } catch (e) {
      this.#onFatal(e as Error);
      throw e;
    }
    if (failed !== undefined) throw failed;
  }
}
