// The replicated state of a node today: a MachineRegistry with the KV
// registered as its "kv" machine and the cluster history as "history". The
// registry is the Replica's state machine port (apply, snapshot, restore); the
// KV serves reads; the history serves GET /v1/cluster/history.
import { SecretsMachine } from './secrets.js';
import { HistoryStateMachine } from './history.js';
import { KvStateMachine } from './kv.js';
import type { KvOptions, KvReader } from './kv.js';
import { MachineRegistry } from './machines.js';
import type { MachineRegistryOptions } from './machines.js';
import { SettingsMachine } from './settings.js';
import { SchedulerMachine } from './scheduler-machine.js';
import { AppStateMachine } from './app-machine.js';
import { TokensMachine } from './tokens.js';
import { AuditMachine } from './audit.js';
import { DrillsMachine } from './drills.js';

export interface KvStateOptions extends KvOptions, MachineRegistryOptions {}

export interface KvState {
  /** Applies entries, owns the applied index, clock and sessions; writes and restores snapshots. */
  readonly registry: MachineRegistry;
  /** The "kv" machine: reads and watches. */
  readonly kv: KvStateMachine;
  /** The "history" machine: leadership and membership events. */
  readonly history: HistoryStateMachine;
  /** The KV's reads with the registry's applied index (what the HTTP API reads). */
  readonly reader: KvReader;
  /** The "settings" machine: failover mode, paused, drained nodes. */
  readonly settings: SettingsMachine;
  /** The "scheduler" machine: slots claimed by the leader-only scheduler (src/node/scheduler.ts). */
  readonly scheduler: SchedulerMachine;
  /** The "app" machine: work queues, locks, the outbox (./app-machine.ts). */
  readonly app: AppStateMachine;
  /** The "tokens" machine: API tokens (hashes) with roles. */
  readonly tokens: TokensMachine;
  /** The "audit" machine: operator and admin actions. */
  readonly audit: AuditMachine;
  /** The "secrets" machine: cluster-secret rotations by `quorate isolate` (./secrets.ts). */
  readonly secrets: SecretsMachine;
  /** The "drills" machine: `quorate drill` reports (./drills.ts). */
  readonly drills: DrillsMachine;
}

export function createKvState(o: KvStateOptions = {}): KvState {
  const registry = new MachineRegistry({
    ...(o.sessionMax !== undefined ? { sessionMax: o.sessionMax } : {}),
    ...(o.sessionTtlMs !== undefined ? { sessionTtlMs: o.sessionTtlMs } : {}),
    ...(o.maxFormatVersion !== undefined ? { maxFormatVersion: o.maxFormatVersion } : {}),
    ...(o.clusterFeatureLevel !== undefined ? { clusterFeatureLevel: o.clusterFeatureLevel } : {}),
  });
  const kv = new KvStateMachine({
    ...(o.watchHistoryEvents !== undefined ? { watchHistoryEvents: o.watchHistoryEvents } : {}),
    ...(o.watchHistoryBytes !== undefined ? { watchHistoryBytes: o.watchHistoryBytes } : {}),
    ...(o.onListenerError !== undefined ? { onListenerError: o.onListenerError } : {}),
    ...(o.yieldToLoop !== undefined ? { yieldToLoop: o.yieldToLoop } : {}),
  });
  registry.register(kv);
  const history = new HistoryStateMachine();
  registry.register(history);
  const settings = new SettingsMachine();
  registry.register(settings);
  const scheduler = new SchedulerMachine();
  registry.register(scheduler);
  const app = new AppStateMachine();
  registry.register(app);
  const tokens = new TokensMachine();
  registry.register(tokens);
  const audit = new AuditMachine();
  registry.register(audit);
  const secrets = new SecretsMachine();
  registry.register(secrets);
  const drills = new DrillsMachine();
  registry.register(drills);
  return { registry, kv, history, settings, scheduler, app, tokens, audit, secrets, drills, reader: kvReaderOf(registry, kv) };
}

/** The KV's reads, with the applied index taken from its registry. */
export function kvReaderOf(registry: Pick<MachineRegistry, 'appliedIndex'>, kv: KvStateMachine): KvReader {
  return {
    get appliedIndex() {
      return registry.appliedIndex;
    },
    get revision() {
      return kv.revision;
    },
    get: (key) => kv.get(key),
    range: (prefix, limit, startAfter) => kv.range(prefix, limit, startAfter),
    watch: (prefix, fromRevision, listener, options) => kv.watch(prefix, fromRevision, listener, options),
    checksum: () => kv.checksum(),
  };
}
