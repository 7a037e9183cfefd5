// Failover and maintenance verbs: failover, config set, pause, resume, drain, undrain (src/node/modes.ts).
import { duration, int, str, type ParsedArgs } from './args.js';
import { UsageError } from './args.js';
import { EXIT, cell, type Verb } from './command.js';

type Body = Record<string, unknown>;

/** " (reason: X, until T, N min left)" for a pause or drain that has either; '' otherwise. */
export function holdText(h: unknown): string {
  if (typeof h !== 'object' || h === null) return '';
  const o = h as Body;
  const bits: string[] = [];
  if (typeof o['reason'] === 'string') bits.push(`reason: ${o['reason']}`);
  if (typeof o['expiresAt'] === 'string') bits.push(`until ${o['expiresAt']}${typeof o['expiresInMs'] === 'number' ? ` (${o['expiresInMs'] < 120_000 ? `${Math.ceil(o['expiresInMs'] / 1000)} s` : `${Math.ceil(o['expiresInMs'] / 60_000)} min`} left)` : ''}`);
  return bits.length > 0 ? ` (${bits.join(', ')})` : '';
}

function modesLine(r: Body): string {
  const parts = [`failover mode ${cell(r['failoverMode'])}`, r['paused'] === true ? `PAUSED${holdText(r['pause'])}` : 'not paused'];
  const drained = r['drained'];
  const drains = (typeof r['drains'] === 'object' && r['drains'] !== null ? r['drains'] : {}) as Body;
  if (Array.isArray(drained) && drained.length > 0) parts.push(`drained: ${drained.map((d) => `${String(d)}${holdText(drains[String(d)])}`).join(', ')}`);
  return parts.join('; ') + (typeof r['notice'] === 'string' ? `\n${r['notice']}` : '');
}

const failover: Verb = {
  name: 'failover',
  usage: '[--to NAME] | --approve NAME --term T',
  description:
    'Makes a voter stand for election: NAME, or else the voter with the highest last index among those that answer. '
    + 'Raft\'s vote rule still decides: a target whose log is behind loses, and the command says so (exit 1). '
    + 'Works with no leader: any node answers. Prints who leads afterwards. '
    + 'Failover mode approval: --approve NAME --term T must name the candidate and term the nodes propose (`quorate status` shows them '
    + 'and this command); anything else is refused (exit 1) with the current proposal.',
  flags: [
    { name: 'to', type: 'string', value: 'NAME', help: 'the voter that should stand for election' },
    { name: 'approve', type: 'string', value: 'NAME', help: 'approval mode: the proposed candidate (with --term)' },
    { name: 'term', type: 'string', value: 'T', help: 'approval mode: the proposed term (with --approve)' },
  ],
  examples: ['quorate failover', 'quorate failover --to node2 --json', 'quorate failover --approve node2 --term 7'],
  remote: true,
  async run(ctx) {
    const to = str(ctx.args, 'to');
    const approve = str(ctx.args, 'approve');
    const term = int(ctx.args, 'term');
    if ((approve === undefined) !== (term === undefined)) throw new UsageError('give --approve NAME and --term T together (both as `quorate status` shows them)', 'failover');
    if (term !== undefined && !(Number.isSafeInteger(term) && term > 0)) throw new UsageError('--term must be a positive integer', 'failover');
    if (approve !== undefined && to !== undefined) throw new UsageError('give either --to or --approve, not both', 'failover');
    const body = approve !== undefined ? { approve, term } : to !== undefined ? { to } : {};
    const r = (await ctx.client().request<Body>('POST', '/v1/cluster/failover', { body })).body;
    ctx.print(r, () => {
      const chosen = Array.isArray(r['candidates']) ? `chose ${cell(r['campaigned'])} (highest last index of ${(r['candidates'] as Body[]).map((c) => `${cell(c['nodeName'])}=${cell(c['lastIndex'])}`).join(', ')})\n` : '';
      return r['elected'] === true
        ? `${chosen}failover done: ${cell(r['leader'])} is the leader (term ${cell(r['term'])})`
        : `${chosen}${cell(r['campaigned'])} stood for election; ${cell(r['leader'])} leads (term ${cell(r['term'])})`;
    });
    return EXIT.ok;
  },
};

const configSet: Verb = {
  name: 'config set',
  usage: 'KEY VALUE',
  description: 'Keys: failover (automatic | manual | approval). The replicated value wins over every node\'s config file (a node whose file disagrees logs a warning naming the key). Needs every member at this release (cluster feature level 2).',
  flags: [],
  examples: ['quorate config set failover manual', 'quorate config set failover approval', 'quorate config set failover automatic'],
  remote: true,
  async run(ctx) {
    const [key, value, ...more] = ctx.args.positionals;
    if (key === undefined || value === undefined || more.length > 0) throw new UsageError('give KEY VALUE, e.g. `quorate config set failover manual`', 'config set');
    if (key !== 'failover') throw new UsageError(`unknown setting ${JSON.stringify(key)} (known: failover)`, 'config set');
    if (value !== 'automatic' && value !== 'manual' && value !== 'approval') throw new UsageError('failover must be automatic, manual or approval', 'config set');
    const r = (await ctx.client().request<Body>('POST', '/v1/cluster/settings', { body: { failover: value }, write: true })).body;
    ctx.print(r, () => modesLine(r));
    return EXIT.ok;
  },
};

const HOLD_FLAGS = [
  { name: 'reason', type: 'string', value: 'TEXT', help: 'why (shown by status, health, the dashboard and the history; needs cluster feature level 3)' },
  { name: 'for', type: 'string', value: 'DURATION', help: 'ends by itself after DURATION (e.g. 30m, 2h; 1s..720h): the leader resumes/undrains then' },
] as const;

/** The API body fields of --reason and --for. */
function holdBody(args: ParsedArgs, name: string): Body {
  const reason = str(args, 'reason');
  const raw = str(args, 'for');
  const ms = duration(args, 'for');
  if (reason !== undefined && reason.trim() === '') throw new UsageError('--reason needs a text, e.g. --reason "kernel upgrade"', name);
  if (raw !== undefined && (ms === undefined || ms < 1000 || ms > 720 * 3_600_000)) throw new UsageError(`--for must be a duration from 1s to 720h, e.g. 30m or 2h (got ${JSON.stringify(raw)})`, name);
  return { ...(reason !== undefined ? { reason } : {}), ...(ms !== undefined ? { expiresInMs: ms } : {}) };
}

function flagCommand(name: 'pause' | 'resume', description: string): Verb {
  const hold = name === 'pause';
  return {
    name, usage: hold ? '[--reason TEXT] [--for DURATION]' : '', description, flags: hold ? [...HOLD_FLAGS] : [],
    examples: hold ? ['quorate pause --reason "kernel upgrade" --for 2h', 'quorate pause --json'] : [`quorate ${name}`], remote: true,
    async run(ctx) {
      if (ctx.args.positionals.length > 0) throw new UsageError(`${name} takes no arguments`, name);
      const r = (await ctx.client().request<Body>('POST', `/v1/cluster/${name}`, { body: hold ? holdBody(ctx.args, name) : {}, write: true })).body;
      ctx.print(r, () => modesLine(r));
      return EXIT.ok;
    },
  };
}

function drainCommand(name: 'drain' | 'undrain'): Verb {
  return {
    name,
    usage: name === 'drain' ? 'NAME [--reason TEXT] [--for DURATION]' : 'NAME',
    description: name === 'drain'
      ? 'A drained node keeps replicating and voting, never campaigns by itself and is never a switchover target. Draining the leader hands leadership to another voter first. With --for the leader undrains it when the time is up (recorded in `quorate history` with the reason).'
      : 'The node may campaign and be a switchover target again.',
    flags: name === 'drain' ? [...HOLD_FLAGS] : [],
    examples: name === 'drain' ? ['quorate drain node2 --reason "disk swap" --for 30m', 'quorate drain node2'] : [`quorate ${name} node2`],
    remote: true,
    async run(ctx) {
      const nodeName = ctx.args.positionals[0];
      if (nodeName === undefined || ctx.args.positionals.length > 1) throw new UsageError('give exactly one node name (see `quorate peers`)', name);
      const r = (await ctx.client().request<Body>('POST', '/v1/cluster/drain', { body: { nodeName, drained: name === 'drain', ...(name === 'drain' ? holdBody(ctx.args, name) : {}) }, write: true })).body;
      ctx.print(r, () => `${modesLine(r)}\nleader: ${cell(r['leader'])}`);
      return EXIT.ok;
    },
  };
}

export const modeCommands: readonly Verb[] = [
  failover,
  configSet,
  flagCommand('pause', 'A replicated flag, in force as soon as its entry is in a node\'s log: while paused no node starts an election by itself (a leader that loses its quorum still steps down). `quorate failover` still elects a leader; switchover still works. With --for the leader resumes by itself when the time is up (recorded in `quorate history` with the reason).'),
  flagCommand('resume', 'Clears the paused flag (if there is no leader, run `quorate failover` first).'),
  drainCommand('drain'),
  drainCommand('undrain'),
];
