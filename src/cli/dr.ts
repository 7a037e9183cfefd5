// DR verbs: promote-dr (SPEC §5; POST /v1/cluster/promote-dr) and
// `recover --force-new-cluster` (offline, on a stopped node's data dir:
// src/node/generation.ts). docs/cli.md, docs/operations.md.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config/index.js';
import { describeLoss, forceNewCluster, type ForceNewClusterReport } from '../node/generation.js';
import { parseBootstrap, selfId } from '../node/members.js';
import { HA_STATE_FILE } from '../storage/index.js';
import { UsageError, bool, str } from './args.js';
import { EXIT, keyValues, type Verb } from './command.js';

const promoteDr: Verb = {
  name: 'promote-dr',
  usage: '--node NAME --confirm [--force]',
  description:
    'Calls POST /v1/cluster/promote-dr on the node --url points at (sent on to the DR node when that is another member). The DR node becomes the only voter ' +
    'of a new cluster generation and serves reads and writes; nodes of the old generation are refused from then on and come back only by `quorate enroll --force`. ' +
    'Refused without --confirm, and while a quorum of the old voters is reachable from the DR node unless --force. Prints the replication lag at promotion: entries ' +
    'and milliseconds behind the last commit index the DR node had heard of. Runbook: docs/operations.md "DR promotion and failback".',
  flags: [
    { name: 'node', type: 'string', value: 'NAME', help: 'the DR node to promote' },
    { name: 'confirm', type: 'boolean', help: 'yes, promote it (writes it never received are lost)' },
    { name: 'force', type: 'boolean', help: 'promote although a quorum of the old voters is reachable from it' },
  ],
  examples: ['quorate promote-dr --url http://10.0.2.11:7101 --node dr1 --confirm', 'quorate promote-dr --node dr1 --confirm --json'],
  remote: true,
  async run(ctx) {
    const node = str(ctx.args, 'node');
    if (node === undefined || node === '') throw new UsageError('--node NAME is required: the DR node to promote', 'promote-dr');
    if (ctx.args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args.positionals[0])}`, 'promote-dr');
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/promote-dr', {
      body: { nodeName: node, confirm: bool(ctx.args, 'confirm'), force: bool(ctx.args, 'force') }, write: true, extraMs: 60_000,
    })).body;
    const lag = (r['lag'] ?? {}) as Record<string, unknown>;
    const nkc = (r['notKnownCommitted'] ?? {}) as Record<string, unknown>;
    ctx.print(r, () => keyValues([
      ['promoted', `${String(r['nodeName'])}: primary of cluster generation ${String(r['generation'])} (was ${String(r['previousGeneration'])})`],
      ['lag at promotion', `${String(lag['entries'])} entries, ${String(lag['ms'])} ms behind commit index ${String(lag['lastCommitHeard'])} (last heard ${String(lag['lastHeardAt'] ?? 'never')}); its log ends at ${String(lag['lastIndex'])}`],
      ['not known committed', Number(nkc['count'] ?? 0) > 0 ? `${String(nkc['count'])} entries (${String(nkc['from'])}..${String(nkc['to'])}), kept` : 'none'],
      ['dropped', Array.isArray(r['dropped']) && r['dropped'].length > 0 ? (r['dropped'] as string[]).join(', ') : 'nobody'],
      ['next', 'point clients at it; when the old site returns, enroll its nodes with --force, then `quorate switchover --to NAME`'],
    ]));
    return EXIT.ok;
  },
};

/** The node's API URL from its ha-state.json, if it ever ran. */
function lastApiUrl(dataDir: string): string | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dataDir, HA_STATE_FILE), 'utf8')) as { ApiUrl?: unknown };
    return typeof v.ApiUrl === 'string' ? v.ApiUrl : undefined;
  } catch {
    return undefined;
  }
}

function render(r: ForceNewClusterReport, done: boolean): string {
  return [
    keyValues([
      ['data dir', r.dataDir],
      ['node', `${r.nodeName ?? '?'} (id ${r.nodeId})`],
      ['generation', `${r.generation.from} -> ${r.generation.to}`],
      ['log', `ends at ${r.lastIndex}, commit index ${r.commitIndex}`],
      ['not known committed', r.notKnownCommitted.count > 0 ? `${r.notKnownCommitted.count} entries (${r.notKnownCommitted.from}..${r.notKnownCommitted.to})` : 'none'],
      ['dropped', r.dropped.length > 0 ? r.dropped.join(', ') : 'nobody'],
    ]),
    '',
    ...describeLoss(r),
    '',
    done
      ? `Done. Start the node (\`quorate agent --config F\`): it runs as a one-voter cluster. Enroll other nodes with \`quorate join-token create\` and \`quorate enroll URL --role R --force\`.`
      : 'Nothing was changed. Repeat with --yes to do it.',
  ].join('\n');
}

const recover: Verb = {
  name: 'recover',
  usage: '--force-new-cluster --data-dir D [--config F] [--yes]',
  description:
    'Offline, on the data dir of a STOPPED node, after the loss of a quorum (like etcd --force-new-cluster): rewrites its membership to itself alone, as voter, under a new ' +
    'cluster generation, and commits every entry of its log. Without --yes it prints what would change and what may be lost, and changes nothing. Afterwards the node ' +
    'starts as a one-voter cluster; nodes of the old generation are refused and come back only by `quorate enroll --force` (their data moved aside). ' +
    'Runbook: docs/operations.md "Forced recovery".',
  flags: [
    { name: 'force-new-cluster', type: 'boolean', help: 'required: the operation' },
    { name: 'config', type: 'string', value: 'F', help: "the node's config file (needed only when the data dir does not say which node it is)" },
    { name: 'yes', type: 'boolean', help: 'do it (without: print what would change)' },
  ],
  examples: ['quorate recover --force-new-cluster --data-dir /var/lib/quorate', 'quorate recover --force-new-cluster --data-dir /var/lib/quorate --yes --json'],
  remote: false,
  async run(ctx) {
    if (!bool(ctx.args, 'force-new-cluster')) throw new UsageError('recover needs --force-new-cluster (the only recovery it does)', 'recover');
    const d = str(ctx.args, 'data-dir');
    if (d === undefined) throw new UsageError('--data-dir D is required: the node.dataDir of the stopped survivor', 'recover');
    const dataDir = resolve(ctx.io.cwd, d);
    if (!existsSync(dataDir)) throw new UsageError(`--data-dir ${dataDir}: no such directory`, 'recover');
    const cfg = str(ctx.args, 'config');
    let nodeId: number | undefined;
    if (cfg !== undefined) {
      const config = loadConfig(resolve(ctx.io.cwd, cfg), {});
      const bPath = join(dataDir, 'bootstrap.json');
      if (existsSync(bPath)) nodeId = selfId(parseBootstrap(readFileSync(bPath, 'utf8'), bPath), config);
    }
    const api = lastApiUrl(dataDir);
    if (api !== undefined) {
      const up = await fetch(`${api.replace(/\/+$/, '')}/system/health/ping`, { signal: AbortSignal.timeout(1500) }).then(() => true, () => false);
      if (up) {
        ctx.io.err(`Error: the node of ${dataDir} is running (its API ${api} answers): stop it first (recover rewrites its log); nothing was changed`);
        return EXIT.failed;
      }
    }
    const yes = bool(ctx.args, 'yes');
    const r = await forceNewCluster({ dataDir, kind: 'force-new-cluster', ...(nodeId !== undefined ? { nodeId } : {}), dryRun: !yes });
    ctx.print({ ...r, done: yes, loss: describeLoss(r) }, () => render(r, yes));
    return yes ? EXIT.ok : EXIT.failed;
  },
};

const isolate: Verb = {
  name: 'isolate',
  usage: 'NAME',
  description:
    'Calls POST /v1/cluster/isolate (forwarded to the leader): removes NAME (as `quorate remove`, with its quorum check; isolating the leader hands leadership over first), ' +
    'so every member refuses its handshake from then on, then rotates the cluster secret it knew: a new secret, sealed under the old one, goes through the log to the ' +
    'remaining members, each writes it to its security.clusterSecretFile at apply. A member that was down meanwhile is refused (code secret_rotated) until the current ' +
    'file is copied to it from a member. Runbook: docs/operations.md "Isolate a node".',
  flags: [],
  examples: ['quorate isolate node3', 'quorate isolate node3 --json'],
  remote: true,
  async run(ctx) {
    const name = ctx.args.positionals[0];
    if (name === undefined || ctx.args.positionals.length > 1) throw new UsageError('give exactly one node name (see `quorate peers`)', 'isolate');
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/isolate', { body: { nodeName: name }, write: true, extraMs: 20_000 })).body;
    ctx.print(r, () => String(r['message']));
    return EXIT.ok;
  },
};

export const drCommands: readonly Verb[] = [promoteDr, recover, isolate];
