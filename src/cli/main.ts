#!/usr/bin/env node
// The `quorate` command. Talks to a node's HTTP API only (except init, agent, demo).
import { appCommands } from './app.js';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CommitUnknownError, QuorateClientError, QuorateHttpError, UnavailableError } from '../api/client.js';
import { ConfigError } from '../config/index.js';
import { GLOBAL_FLAGS, UsageError, bool, parseArgs, splitVerb, type FlagSpec } from './args.js';
import { agentCommand } from './agent.js';
import { backupCommands } from './backup.js';
import { jobCommands } from './jobs.js';
import { clusterCommands } from './cluster.js';
import { Context, EXIT, allFlags, type Command, type Io } from './command.js';
import { demoCommand } from './demo.js';
import { doctorCommand } from './doctor.js';
import { installServiceCommand } from './service.js';
import { initCommand } from './init.js';
import { kvCommands } from './kv.js';
import { lbConfigCommand } from './lb-config.js';
import { memberCommands } from './members.js';
import { drCommands } from './dr.js';
import { drillCommand } from './drill.js';
import { modeCommands } from './modes.js';
import { securityCommands } from './security.js';
import { sqlCommands } from './sql.js';
import { opsCommands } from './ops.js';

// One entry per line, so that features add verbs without touching each other's lines.
export const COMMANDS: readonly Command[] = [
  demoCommand,
  initCommand,
  agentCommand,
  installServiceCommand,
  ...clusterCommands,
  doctorCommand,
  ...memberCommands,
  ...drCommands,
  ...modeCommands,
  ...kvCommands,
  ...backupCommands,
  ...jobCommands,
  ...appCommands,
  ...securityCommands,
  ...sqlCommands,
  lbConfigCommand,
  ...opsCommands,
  drillCommand,
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
  let command: Command | undefined;
  try {
    const { verb, rest } = splitVerb(argv, GROUPS);
    const name = verb.join(' ');
    if (verb.length === 0) {
      const top = parseArgs(rest, GLOBAL_FLAGS, '');
      if (bool(top, 'help')) { io.out(topHelp()); return EXIT.ok; }
      io.err(`${topHelp()}\n\nError: no verb given`);
      return EXIT.usage;
    }
    command = COMMANDS.find((c) => c.name === name);
    if (!command) {
      if (verb.length === 1 && GROUPS.has(name)) {
        const subs = COMMANDS.filter((c) => c.name.startsWith(`${name} `));
        const text = `Usage: quorate ${name} <${subs.map((c) => c.name.split(' ')[1]).join('|')}> ...\n\n${subs.map((c) => `  quorate ${c.name} ${c.usage}\n      ${c.summary}`).join('\n')}\n\nRun \`quorate ${name} <verb> --help\` for details.`;
        if (bool(parseArgs(rest, GLOBAL_FLAGS, name), 'help')) { io.out(text); return EXIT.ok; }
        io.err(`${text}\n\nError: "quorate ${name}" needs a verb`);
        return EXIT.usage;
      }
      throw new UsageError(`unknown verb "${name}" (verbs: ${[...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))].join(', ')})`);
    }
    const args = parseArgs(rest, allFlags(command), command.name);
    if (bool(args, 'help')) { io.out(commandHelp(command)); return EXIT.ok; }
    return await command.run(new Context(command, args, io));
  } catch (err) {
    return reportError(err, command, io);
  }
}

function reportError(err: unknown, command: Command | undefined, io: Io): number {
  const verb = command?.name ?? '';
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
