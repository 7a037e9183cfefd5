// quorate agent --config F: run one node (the daemon).
import { resolve } from 'node:path';
import { ConfigError, loadConfig, type QuorateConfig } from '../config/index.js';
import { UsageError, str } from './args.js';
import { EXIT, type Verb } from './command.js';

type RunAgent = (config: QuorateConfig, opts: { configPath: string; joinToken?: string }) => Promise<void>;

export const agentCommand: Verb = {
  name: 'agent',
  usage: '--config F [--join-token T]',
  description: 'Loads and validates the config (QUORATE_<SECTION>_<KEY> variables override single keys), then runs the node until SIGTERM / SIGINT. A config error prints the key path and exits 2.',
  flags: [
    { name: 'config', type: 'string', value: 'F', help: 'config file (default ./quorate.json)' },
    { name: 'join-token', type: 'string', value: 'T', help: 'wait to be enrolled into a running cluster with this join token (`quorate join-token create`; or set QUORATE_JOIN_TOKEN, which ps does not show)' },
  ],
  examples: [
    'quorate agent --config /etc/quorate/quorate.json',
    'QUORATE_CLUSTER_ELECTIONTIMEOUTMS=800 quorate agent --config quorate.json',
    'QUORATE_JOIN_TOKEN=qjt-… quorate agent --config node4.json   # then: quorate enroll http://10.0.1.13:7101 --peer-url 10.0.1.13:5201',
  ],
  remote: false,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError(`"quorate agent" takes no positional arguments (use --config), got ${JSON.stringify(ctx.args.positionals[0])}`, 'agent');
    const configPath = resolve(ctx.io.cwd, str(ctx.args, 'config') ?? 'quorate.json');
    let config: QuorateConfig;
    try {
      config = loadConfig(configPath, ctx.io.env);
    } catch (err) {
      if (err instanceof ConfigError) {
        ctx.io.err(`Error: ${err.message}\nHint: fix the key named above (docs/configuration.md lists every key), or create a starter file with \`quorate init\`.`);
        return EXIT.usage;
      }
      throw err;
    }
    let runAgent: RunAgent;
    try {
      ({ runAgent } = await import('../node/agent.js'));
    } catch (err) {
      ctx.io.err(`Error: this build has no node runtime (${(err as Error).message})`);
      return EXIT.failed;
    }
    const joinToken = str(ctx.args, 'join-token') ?? (ctx.io.env['QUORATE_JOIN_TOKEN'] || undefined);
    await runAgent(config, { configPath, ...(joinToken !== undefined ? { joinToken } : {}) });
    return EXIT.ok;
  },
};
