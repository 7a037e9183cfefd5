// `quorate witness confirm` (POST /v1/cluster/witness/confirm on the node
// --url points at): after the Redis witness restarted, failed over or lost
// its data, no node promotes itself until an operator confirms on the node
// that should lead (src/coord/WITNESS.md; docs/operations.md "Two nodes and a
// Redis witness").
import { UsageError, bool, int } from './args.js';
import { EXIT, keyValues, type Command } from './command.js';

const witnessConfirm: Command = {
  name: 'witness confirm',
  summary: 'trust the Redis witness record again (or recreate it) after Redis restarted or lost its data',
  usage: '--confirm [--min-epoch N]',
  description:
    'Calls POST /v1/cluster/witness/confirm on the node --url points at. Only in witness mode (cluster.coordination "redis" with database.mode "local-sync"). ' +
    'When Redis restarted, failed over or lost its data, the record can no longer be trusted and no node takes the lease. Confirming re-stamps the record; ' +
    'when it is gone it is recreated with this node alone in the in-sync set and an epoch above this node\'s term. Run it on the node with the most data (the last leader): ' +
    'another node may lack acknowledged writes. Refused without --confirm.',
  flags: [
    { name: 'confirm', type: 'boolean', help: 'yes, confirm on this node (it must hold every acknowledged write)' },
    { name: 'min-epoch', type: 'int', value: 'N', help: 'the next epoch is above N too: pass the other node\'s term when it is down (`quorate status` on it shows `term`)' },
  ],
  examples: ['quorate witness confirm --url http://10.0.1.11:7101 --confirm', 'quorate witness confirm --confirm --json'],
  remote: true,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args.positionals[0])}`, 'witness confirm');
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/witness/confirm', { body: { confirm: bool(ctx.args, 'confirm'), ...(int(ctx.args, 'min-epoch') !== undefined ? { minEpoch: int(ctx.args, 'min-epoch') } : {}) }, write: true })).body;
    ctx.print(r, () => keyValues([
      ['confirmed on', String(r['nodeName'])],
      ['epoch', String(r['epoch'])],
      ['in-sync set', Array.isArray(r['inSync']) ? (r['inSync'] as number[]).join(', ') : '?'],
      ['next', 'a member of the in-sync set takes the lease within a renewal interval; `quorate status` shows who leads'],
    ]));
    return EXIT.ok;
  },
};

export const witnessCommands: readonly Command[] = [witnessConfirm];
