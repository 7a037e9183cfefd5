#!/usr/bin/env node
// The `quorate` command. Talks to a node's HTTP API only (except init, agent, demo).
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CommitUnknownError, QuorateClientError, QuorateHttpError, UnavailableError } from '../api/client-types.js';
import { ConfigError } from '../config/errors.js';
import { GLOBAL_FLAGS, UsageError, bool, parseArgs, splitVerb, type FlagSpec } from './args.js';
import { Context, EXIT, allFlags, loadForToken, type Command, type Io, type Verb } from './command.js';

/** A verb as the table lists it: the top help needs only its name and summary; the rest is in its module. */
export interface VerbEntry {
  readonly name: string;
  readonly summary: string;
  /** Loads the verb's module (the first time) and returns the verb with its summary. */
  load(): Promise<Command>;
}

type Load = () => Promise<Verb | readonly Verb[]>;

// The modules that hold the verbs. A module is loaded only when one of its
// verbs runs or shows its --help: loading all of them (and what they import:
// the node runtime for backup verify, the drill runner, ...) cost every
// `quorate` call about 0.15 s of CPU before it did anything.
const from = {
  demo: async () => (await import('./demo.js')).demoCommand,
  init: async () => (await import('./init.js')).initCommand,
  agent: async () => (await import('./agent.js')).agentCommand,
  service: async () => (await import('./service.js')).installServiceCommand,
  cluster: async () => (await import('./cluster.js')).clusterCommands,
  doctor: async () => (await import('./doctor.js')).doctorCommand,
  members: async () => (await import('./members.js')).memberCommands,
  dr: async () => (await import('./dr.js')).drCommands,
  modes: async () => (await import('./modes.js')).modeCommands,
  kv: async () => (await import('./kv.js')).kvCommands,
  backup: async () => (await import('./backup.js')).backupCommands,
  jobs: async () => (await import('./jobs.js')).jobCommands,
  app: async () => (await import('./app.js')).appCommands,
  security: async () => (await import('./security.js')).securityCommands,
  sql: async () => (await import('./sql.js')).sqlCommands,
  files: async () => (await import('./files.js')).filesCommands,
  lbConfig: async () => (await import('./lb-config.js')).lbConfigCommand,
  ops: async () => (await import('./ops.js')).opsCommands,
  drill: async () => (await import('./drill.js')).drillCommand,
  witness: async () => (await import('./witness.js')).witnessCommands,
} satisfies Record<string, Load>;

/** The modules of the verbs (a test checks that COMMANDS lists every verb they hold). */
export { from as VERB_MODULES };

function verb(name: string, summary: string, load: Load): VerbEntry {
  return {
    name,
    summary,
    async load() {
      const found = ([] as Verb[]).concat(await load()).find((v) => v.name === name);
      if (found === undefined) throw new Error(`"quorate ${name}" is listed in COMMANDS (src/cli/main.ts) but its module has no verb of that name`);
      return { ...found, summary };
    },
  };
}

// One entry per line (name, summary, module), so that features add verbs without touching each other's lines.
export const COMMANDS: readonly VerbEntry[] = [
  verb('demo', 'start a local cluster in one command and print its URLs and token', from.demo),
  verb('init', 'write a starter quorate.json, an admin token and the cluster secret', from.init),
  verb('agent', 'run one node (the daemon) from a config file', from.agent),
  verb('install-service', 'write the systemd unit that runs this node (quorate agent) and say how to enable it', from.service),
  verb('status', 'cluster table: every node, its role, health and replication lag', from.cluster),
  verb('leader', 'name of the current Raft leader', from.cluster),
  verb('active', 'name of the node serving client traffic (holds the VIP / leader-only work)', from.cluster),
  verb('id', 'name of the node you are talking to', from.cluster),
  verb('peers', 'every known cluster member, with match index and last contact', from.cluster),
  verb('state', "this node's HA state: role, term, leader, commit and applied index", from.cluster),
  verb('dump', "this node's state plus its state-machine position (and checksum)", from.cluster),
  verb('failover-safe', 'exit 0 when at least one voter is fully caught up with the leader', from.cluster),
  verb('switchover', 'planned leadership transfer to a caught-up voter, now or at a set time', from.cluster),
  verb('history', 'leadership and membership changes, with times, terms and reasons', from.cluster),
  verb('doctor', 'HA checklist: nodes, quorum, replication, load-balancer endpoints, clocks, storage, versions, certificates, maintenance, last drill', from.doctor),
  verb('join-token create', 'a one-time join token for enrolling a node (valid 10 minutes by default)', from.members),
  verb('enroll', 'add a node to the cluster online (it joins as a learner, is promoted once caught up)', from.members),
  verb('remove', 'remove a node from the cluster online (its id is never reused)', from.members),
  verb('promote-dr', 'make a DR node the primary after the loss of the primary site (prints the lag at promotion)', from.dr),
  verb('recover', 'forced recovery of a lone survivor: make a stopped node a one-voter cluster (--force-new-cluster)', from.dr),
  verb('isolate', 'remove a suspected-compromised node at once and rotate the cluster secret', from.dr),
  verb('failover', 'elect a leader now (manual failover, approval failover, or while paused)', from.modes),
  verb('config set', 'change a cluster-wide setting kept in the replicated state', from.modes),
  verb('pause', 'maintenance mode: no automatic failover until resume', from.modes),
  verb('resume', 'end maintenance mode: automatic failover again', from.modes),
  verb('drain', 'keep a node from ever starting an election or taking over', from.modes),
  verb('undrain', 'end a drain', from.modes),
  verb('kv get', 'read a key (prints its value)', from.kv),
  verb('kv put', 'write a key (VALUE "-" reads stdin)', from.kv),
  verb('kv del', 'delete a key', from.kv),
  verb('kv ls', 'list keys under a prefix, sorted', from.kv),
  verb('backup create', 'take a backup now: the leader writes it into its backup dir, or --out downloads it here', from.backup),
  verb('backup list', 'list backups with time, index, term and size', from.backup),
  verb('backup verify', 'check an archive: every part against the manifest, then a restore into a scratch dir', from.backup),
  verb('backup restore', "restore an archive into a stopped node's empty data dir, as a new one-node cluster", from.backup),
  verb('jobs ls', 'the leader-only scheduled jobs of the config, with their next slot and run count', from.jobs),
  verb('jobs history', "a job's runs, newest first: slot, node, term (fencing token), start, end, outcome, exit code, output tail", from.jobs),
  verb('jobs run', 'start a configured job now on the leader', from.jobs),
  verb('queue stats', 'work queue depths: ready, delayed, in flight, acked, dead-lettered (all queues without Q)', from.app),
  verb('queue push', 'enqueue a message (prints its id)', from.app),
  verb('queue claim', 'claim messages (hidden from others until the visibility timeout; prints the claim token)', from.app),
  verb('queue ack', 'acknowledge claimed messages (removes them)', from.app),
  verb('queue nack', 'give claimed messages back (visible again after --delay)', from.app),
  verb('lock ls', 'locks held now: owner, fencing token, expiry', from.app),
  verb('lock acquire', 'acquire a lock for OWNER (prints the fencing token; exits 1 when another owner holds it)', from.app),
  verb('lock release', 'release a lock held by OWNER with TOKEN', from.app),
  verb('outbox ls', 'messages waiting for delivery to outbox.webhookUrl, oldest first', from.app),
  verb('outbox push', 'add a message for the leader to deliver to outbox.webhookUrl', from.app),
  verb('checks', "application health checks of the node at --url (exit 3 when a critical one fails), and the other nodes' as its leader sees them", from.app),
  verb('token create', 'create an API token with a role (shown once)', from.security),
  verb('token ls', 'list the managed API tokens (names, roles, expiry; never the tokens)', from.security),
  verb('token revoke', 'revoke an API token by name (stops working on every node)', from.security),
  verb('audit', 'the audit log: who did which operator/admin action, when, from where, with what result', from.security),
  verb('ca export', "print the cluster CA's trusted roots (PEM) for clients' --ca", from.security),
  verb('ca show', "the cluster CA: trusted roots, their validity, this node's certificate, the secret reference", from.security),
  verb('ca rotate', 'move the cluster CA to new roots (and every node to a new key) without isolating anyone', from.security),
  verb('sql', 'run SQL on the replicated database (a query, or --execute for writes)', from.sql),
  verb('files put', 'upload a file to the replicated files (SOURCE "-" reads stdin)', from.files),
  verb('files get', 'download a replicated file (to DEST, or stdout without it or with "-")', from.files),
  verb('files ls', 'list replicated files under a prefix, with size, SHA-256 and revision', from.files),
  verb('files rm', 'delete a replicated file', from.files),
  verb('lb-config', 'print a HAProxy or nginx config for this cluster (health-checked)', from.lbConfig),
  verb('alerts', 'the built-in alerts firing now on every member, and the recent fired/resolved notifications', from.ops),
  verb('diagnostics', 'download a diagnostic bundle (status, config with secrets redacted, logs, history, metrics of every member) for a support ticket', from.ops),
  verb('drill', 'run a failover drill: fault a node, measure detection, new leader, RTO and RPO (acknowledged writes lost)', from.drill),
  verb('witness confirm', 'trust the Redis witness record again (or recreate it) after Redis restarted or lost its data', from.witness),
];
const GROUPS = new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!));

function flagLines(flags: readonly FlagSpec[]): string {
  const left = flags.map((f) => `  --${f.name}${f.value ? ` ${f.value}` : ''}`);
  const w = Math.max(...left.map((l) => l.length));
  return flags.map((f, i) => `${left[i]!.padEnd(w)}  ${f.help}`).join('\n');
}

export function commandHelp(c: Command): string {
  const globals = c.remote ? GLOBAL_FLAGS : GLOBAL_FLAGS.filter((f) => f.name === 'json' || f.name === 'help' || (c.name === 'init' && f.name === 'data-dir'));
  const dataDirNote = c.name === 'init' ? '\n(for init, --data-dir is the node\'s data dir, default ./data next to quorate.json)' : '';
  return [
    `Usage: quorate ${c.name}${c.usage ? ` ${c.usage}` : ''}`,
    '',
    `${c.summary[0]!.toUpperCase()}${c.summary.slice(1)}.${c.description ? ` ${c.description}` : ''}`,
    ...(c.flags.length > 0 ? ['', 'Flags:', flagLines(c.flags)] : []),
    '',
    'Global flags:',
    flagLines(globals) + dataDirNote,
    '',
    'Examples:',
    ...c.examples.map((e) => `  ${e}`),
    '',
    'Exit codes: 0 ok, 1 failed operation, 2 bad usage, 3 cluster unhealthy (status).',
  ].join('\n');
}

export function topHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: quorate <verb> [flags]',
    '',
    'quorate: a highly available cluster runtime. Verbs:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Global flags:',
    flagLines(GLOBAL_FLAGS),
    '',
    'Run `quorate <verb> --help` for a verb\'s flags and examples.',
    'Exit codes: 0 ok, 1 failed operation, 2 bad usage, 3 cluster unhealthy (status).',
  ].join('\n');
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  let verbName = '';
  try {
    const { verb, rest } = splitVerb(argv, GROUPS);
    const name = verb.join(' ');
    if (verb.length === 0) {
      const top = parseArgs(rest, GLOBAL_FLAGS, '');
      if (bool(top, 'help')) { io.out(topHelp()); return EXIT.ok; }
      io.err(`${topHelp()}\n\nError: no verb given`);
      return EXIT.usage;
    }
    const entry = COMMANDS.find((c) => c.name === name);
    if (!entry) {
      if (verb.length === 1 && GROUPS.has(name)) {
        const subs = await Promise.all(COMMANDS.filter((c) => c.name.startsWith(`${name} `)).map((c) => c.load()));
        const text = `Usage: quorate ${name} <${subs.map((c) => c.name.split(' ')[1]).join('|')}> ...\n\n${subs.map((c) => `  quorate ${c.name} ${c.usage}\n      ${c.summary}`).join('\n')}\n\nRun \`quorate ${name} <verb> --help\` for details.`;
        if (bool(parseArgs(rest, GLOBAL_FLAGS, name), 'help')) { io.out(text); return EXIT.ok; }
        io.err(`${text}\n\nError: "quorate ${name}" needs a verb`);
        return EXIT.usage;
      }
      throw new UsageError(`unknown verb "${name}" (verbs: ${[...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))].join(', ')})`);
    }
    verbName = entry.name;
    const command = await entry.load();
    const args = parseArgs(rest, allFlags(command), command.name);
    if (bool(args, 'help')) { io.out(commandHelp(command)); return EXIT.ok; }
    await loadForToken(io.cwd);
    return await command.run(new Context(command, args, io));
  } catch (err) {
    return reportError(err, verbName, io);
  }
}

function reportError(err: unknown, verb: string, io: Io): number {
  if (err instanceof UsageError) {
    io.err(`Error: ${err.message}\nHint: run \`quorate ${err.verb || verb ? `${err.verb || verb} ` : ''}--help\` for usage.`);
    return EXIT.usage;
  }
  if (err instanceof ConfigError) {
    io.err(`Error: ${err.message}`);
    return EXIT.usage;
  }
  if (err instanceof UnavailableError) {
    io.err(`Error: ${err.message}\nHint: is the node running? Start one with \`quorate agent --config quorate.json\` or \`quorate demo\`; pass --url (or set QUORATE_URL) to reach another node.`);
    return EXIT.failed;
  }
  if (err instanceof CommitUnknownError) {
    io.err(`Error: ${err.message}\nHint: the write may or may not have been applied; read it back (e.g. \`quorate kv get\`) before retrying.`);
    return EXIT.failed;
  }
  if (err instanceof QuorateHttpError) {
    io.err(`Error: ${err.message} (HTTP ${err.status} ${err.code} from ${err.url})${httpHint(err)}`);
    return EXIT.failed;
  }
  if (err instanceof QuorateClientError) {
    io.err(`Error: ${err.message}${err.code === 'invalid_argument' ? '\nHint: check --url (e.g. --url http://127.0.0.1:7101).' : ''}`);
    return err.code === 'invalid_argument' ? EXIT.usage : EXIT.failed;
  }
  io.err(`Error: ${err instanceof Error ? err.message : String(err)}`);
  if (io.env['QUORATE_DEBUG'] !== undefined && err instanceof Error && err.stack) io.err(err.stack);
  return EXIT.failed;
}

function httpHint(err: QuorateHttpError): string {
  switch (err.status) {
    case 401: return '\nHint: pass --token, set QUORATE_TOKEN, or point --data-dir at the node\'s data dir (its admin.token).';
    case 403: return '\nHint: this token\'s role does not allow the call; use an admin (or operator) token.';
    case 409: return err.currentRevision !== undefined ? `\nHint: the key is at revision ${err.currentRevision}; re-read it and retry with --if-revision ${err.currentRevision}.` : '';
    case 503: return '\nHint: the cluster has no leader or no quorum right now; run `quorate status` to see which nodes are reachable.';
    case 429: return '\nHint: the node is overloaded; retry later.';
    case 404: return err.code === 'not_found' ? '' : '\nHint: this node may run an older version without this endpoint.';
    default: return '';
  }
}

const io: Io = {
  out: (t) => { process.stdout.write(`${t}\n`); },
  err: (t) => { process.stderr.write(`${t}\n`); },
  env: process.env,
  cwd: process.cwd(),
};

function isEntry(): boolean {
  const arg = process.argv[1];
  if (arg === undefined) return false;
  try { return realpathSync(arg) === realpathSync(fileURLToPath(import.meta.url)); } catch { return false; }
}

if (isEntry()) {
  main(process.argv.slice(2), io).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => { process.stderr.write(`Error: ${String(err)}\n`); process.exitCode = EXIT.failed; },
  );
}
