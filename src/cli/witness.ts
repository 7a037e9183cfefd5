// `quorate witness confirm` (POST /v1/cluster/witness/confirm on the node
// --url points at): after the Redis witness restarted, failed over or lost
// its data, no node promotes itself until an operator confirms on the node
// that should lead (src/coord/WITNESS.md; docs/operations.md "Two nodes and a
// Redis witness").
import { UsageError, bool, int } from './args.js';
import { EXIT, keyValues, type Verb } from './command.js';

const witnessConfirm: Verb = {
  name: 'witness confirm',
  usage: '--confirm [--min-epoch N]',
  description:
    'Calls POST /v1/cluster/witness/confirm on the node --url points at. Only in witness mode (cluster.coordination "redis" with database.mode "local-sync"). ' +
    'When Redis restarted, failed over or lost its data, the record can no longer be trusted and no node takes the lease. Confirming re-stamps the record; ' +
    'when it is gone it is recreated with this node alone in the in-sync set. The node first asks every other data node for its term over its API (with your token) ' +
    'and takes the next epoch above all of them, so no epoch a node already led at is handed out again; when a node cannot be asked it refuses ' +
    '(409 witness_peer_unreachable, naming the node) unless --min-epoch gives that node\'s last term. Run it on the node with the most data (the last leader): ' +
    'another node may lack acknowledged writes. After the confirm no node takes the lease for one lease TTL (cluster.leaderLockTtlSeconds), or until the lease recorded before it would have ended: ' +
    'a leader cut off from Redis may act until its own deadline. Refused without --confirm.',
  flags: [
    { name: 'confirm', type: 'boolean', help: 'yes, confirm on this node (it must hold every acknowledged write)' },
    { name: 'min-epoch', type: 'int', value: 'N', help: 'only when another data node cannot be asked: the next epoch is above N, its last term (`quorate status` on it showed `term`; 0 only if its data is gone for good)' },
  ],
  examples: ['quorate witness confirm --url http://10.0.1.11:7101 --confirm', 'quorate witness confirm --confirm --json', 'quorate witness confirm --url http://10.0.1.11:7101 --confirm --min-epoch 12'],
  remote: true,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args.positionals[0])}`, 'witness confirm');
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/witness/confirm', { body: { confirm: bool(ctx.args, 'confirm'), ...(int(ctx.args, 'min-epoch') !== undefined ? { minEpoch: int(ctx.args, 'min-epoch') } : {}) }, write: true })).body;
    ctx.print(r, () => keyValues([
      ['confirmed on', String(r['nodeName'])],
      ['epoch', String(r['epoch'])],
      ['in-sync set', Array.isArray(r['inSync']) ? (r['inSync'] as number[]).join(', ') : '?'],
      ['epoch floor', String(r['floor'])],
      ...(Array.isArray(r['peers']) ? (r['peers'] as Record<string, unknown>[]).map((p): [string, string] => [`asked ${String(p['nodeName'])}`,
        typeof p['term'] === 'number' ? `term ${p['term']}, lastIndex ${String(p['lastIndex'])}` : `not reachable (${String(p['unreachable'])}): --min-epoch used`]) : []),
      ...(typeof r['warning'] === 'string' ? [['warning', r['warning']] as [string, string]] : []),
      ['next', 'a member of the in-sync set takes the lease within a renewal interval; `quorate status` shows who leads'],
    ]));
    return EXIT.ok;
  },
};

export const witnessCommands: readonly Verb[] = [witnessConfirm];
