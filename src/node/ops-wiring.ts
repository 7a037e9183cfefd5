// The agent's operations features, built beside the node (they read it only
// through the ports the HTTP API uses): built-in alerts (./alerts.ts) with
// their webhook (./alert-webhook.ts), and the diagnostic bundle's local part
// (./diagnostics.ts) with the in-memory log ring (./log-ring.ts).
import type { Logger } from 'pino';
import type { OpsPort } from '../api/ports-ops.js';
import type { QuorateConfig } from '../config/index.js';
import { AlertEngine } from './alerts.js';
import { AlertWebhook, loadAlertSecret } from './alert-webhook.js';
import { NodeDiagnostics } from './diagnostics.js';
import type { LogRing } from './log-ring.js';
import type { NodeHost } from './node-host.js';
import { NetDiskSampler } from './netdisk.js';
import { LeaderWatch } from './leader-watch.js';

/** Reads alerts.secretFile (throws naming the key when unusable or equal to a cluster secret). Call before starting the node. */
export function alertSecretOf(config: QuorateConfig): string | undefined {
  return loadAlertSecret(config.alerts, [
    { key: 'security.clusterSecretFile', file: config.security.clusterSecretFile },
    { key: 'security.adminTokenFile', file: config.security.adminTokenFile },
  ]);
}

export function opsFor(config: QuorateConfig, host: NodeHost, logger: Logger, opts: { alertSecret: string | undefined; logs?: LogRing }): { ops: OpsPort; stop(): Promise<void> } {
  const log = logger.child({ node: config.node.nodeName });
  const webhook = config.alerts.webhookUrl !== '' ? new AlertWebhook(config.alerts, opts.alertSecret, log) : undefined;
  const alerts = new AlertEngine(config.alerts, {
    nodeName: config.node.nodeName, haId: config.cluster.haId, dataDir: config.node.dataDir,
    status: () => host.cluster.status(), health: () => host.coord.health(), history: () => host.cluster.clusterHistory().records,
    drills: () => host.drills.schedule(),
    certificates: () => host.cluster.certificates?.() ?? [],
  }, log, webhook);
  alerts.start();
  const diagnostics = new NodeDiagnostics({ config, cluster: host.cluster, coord: host.coord, alerts, ...(opts.logs !== undefined ? { logs: opts.logs } : {}) });
  const leaders = new LeaderWatch(() => host.cluster.status());
  leaders.start();
  const netdisk = new NetDiskSampler({ nodeName: config.node.nodeName, dataDir: config.node.dataDir, status: () => host.cluster.status(), metricText: (name) => host.node.metricText(name), leaderChanges: () => leaders.changes(),
    onRtt: (samples) => { const n = host.node; if ('recordPeerRtt' in n) n.recordPeerRtt(samples); } });
  netdisk.start();
  return { ops: { alerts, diagnostics, netdisk }, stop: () => { netdisk.stop(); leaders.stop(); return alerts.stop(); } };
}
