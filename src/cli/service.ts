// `quorate install-service`: writes the systemd unit that runs `quorate agent`
// (docs/quorate.service is the same unit, rendered with the defaults).
// Restart=always matters beyond convenience: drills crash a node on purpose
// and count on the service manager to bring it back.
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../node/runtime-env.js';
import { existsSync, writeFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, bool, str } from './args.js';
import { EXIT, type Verb } from './command.js';

export interface UnitOptions {
  /** Absolute path of node. */
  readonly node: string;
  /** Absolute path of the quorate CLI entry (dist/src/bundle/main.js, the bundle scripts/build-bundle.mjs makes). */
  readonly cli: string;
  readonly config: string;
  readonly user: string;
  /** The node's data dir: the only place it writes. */
  readonly dataDir: string;
}

/** The unit text (pure). */
export function systemdUnit(o: UnitOptions): string {
  return `# quorate node — written by \`quorate install-service\` (see docs/operations.md "Running as a service").
[Unit]
Description=quorate high-availability cluster node
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=${o.user}
Group=${o.user}
ExecStart=${[o.node, ...AGENT_NODE_FLAGS, o.cli].join(' ')} agent --config ${o.config}
# Always come back: after a crash, a kill -9, an OOM kill, or a drill's crash fault.
Restart=always
RestartSec=1s
# A clean stop steps down first (leadership handed over); give it time.
TimeoutStopSec=30s
KillSignal=SIGTERM
# Peer connections, client connections, WAL segments and snapshot files.
LimitNOFILE=65536
Environment=NODE_ENV=production
# Memory (large Buffers returned to the system when freed) and the msgpack codec in JavaScript (src/node/runtime-env.ts).
${Object.entries(AGENT_ENV).map(([k, v]) => `Environment=${k}=${v}`).join('\n')}

# Hardening: the node writes only its data dir.
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=${o.dataDir}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
`;
}

const DEFAULT_UNIT = '/etc/systemd/system/quorate.service';

export const installServiceCommand: Verb = {
  name: 'install-service',
  usage: '--config F [--user quorate] [--data-dir D] [--output FILE | --print] [--force]',
  description: `Writes a systemd unit (default ${DEFAULT_UNIT}) that runs \`quorate agent --config F\` as a dedicated user with Restart=always, LimitNOFILE and hardening options (the node may write only its data dir). It does not create the user or start anything: it prints the commands to run. --print writes the unit to stdout instead. On Windows, run the agent under a service wrapper (see docs/operations.md).`,
  flags: [
    { name: 'config', type: 'string', value: 'F', help: 'the node\'s quorate.json (made absolute)' },
    { name: 'user', type: 'string', value: 'USER', help: 'the system user the node runs as (default quorate)' },
    { name: 'data-dir', type: 'string', value: 'D', help: 'the node\'s data dir, the only path it may write (default: next to the config, ./data)' },
    { name: 'output', type: 'string', value: 'FILE', help: `where to write the unit (default ${DEFAULT_UNIT})` },
    { name: 'print', type: 'boolean', help: 'print the unit instead of writing it' },
    { name: 'force', type: 'boolean', help: 'overwrite an existing unit file' },
  ],
  examples: ['quorate install-service --config /etc/quorate/quorate.json', 'quorate install-service --config /etc/quorate/quorate.json --print'],
  remote: false,
  async run(ctx) {
    const cfg = str(ctx.args, 'config');
    if (cfg === undefined) throw new UsageError('--config is required: the quorate.json the service runs with', 'install-service');
    const config = resolve(ctx.io.cwd, cfg);
    const user = str(ctx.args, 'user') ?? 'quorate';
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw new UsageError(`--user must be a system user name (lower case letters, digits, _ and -), got ${JSON.stringify(user)}`, 'install-service');
    const dd = str(ctx.args, 'data-dir');
    const dataDir = dd !== undefined ? resolve(ctx.io.cwd, dd) : resolve(config, '..', 'data');
    for (const [flag, p] of [['config', config], ['data-dir', dataDir]] as const) {
      if (/\s/.test(p)) throw new UsageError(`--${flag} ${JSON.stringify(p)} contains white space, which a systemd unit line cannot hold unquoted; use a path without spaces`, 'install-service');
    }
    const unit = systemdUnit({ node: process.execPath, cli: fileURLToPath(new URL('./main.js', import.meta.url)), config, user, dataDir });
    if (bool(ctx.args, 'print')) {
      ctx.io.out(unit);
      return EXIT.ok;
    }
    const out = resolve(ctx.io.cwd, str(ctx.args, 'output') ?? DEFAULT_UNIT);
    if (!isAbsolute(out)) throw new UsageError('--output must be a path', 'install-service');
    if (existsSync(out) && !bool(ctx.args, 'force')) {
      ctx.io.err(`Error: ${out} exists; pass --force to overwrite it (or --print to see the new unit)`);
      return EXIT.failed;
    }
    writeFileSync(out, unit, { mode: 0o644 });
    const steps = [
      `id ${user} >/dev/null 2>&1 || useradd --system --home ${dataDir} --shell /usr/sbin/nologin ${user}`,
      `install -d -o ${user} -g ${user} -m 0700 ${dataDir}`,
      `chown ${user}:${user} ${config}`,
      'systemctl daemon-reload',
      'systemctl enable --now quorate',
      'journalctl -u quorate -f      # its log',
    ];
    ctx.print({ unit: out, user, config, dataDir, next: steps }, () => `wrote ${out}\nNext, as root:\n${steps.map((s) => `  ${s}`).join('\n')}`);
    return EXIT.ok;
  },
};
