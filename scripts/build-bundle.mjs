// Bundles the `quorate` command (dist/src/cli/main.js and everything it
// imports, the verbs' modules as chunks loaded when used) into
// dist/src/bundle/, with the SQL workers as entries of their own. The
// installed command, the systemd unit, `quorate demo` and the integration
// tests all run this bundle (src/node/runtime-env.ts names it).
// Why: Node 20 loads ES modules one file at a time (resolve, stat, read,
// compile); the agent's ~240 modules and their packages took 230 ms of every
// start on this project's 2-core machine, 100 ms bundled
// (docs/performance.md "Start-up"). Native addons stay external.
// The bundle sits at the same depth as dist/src/<dir>/, so paths the code
// builds from import.meta.url ('../../web/', '../sql/read-worker.js') mean the
// same in both.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

rmSync('dist/src/bundle', { recursive: true, force: true });
await build({
  entryPoints: {
    main: 'dist/src/cli/main.js',
    'read-worker': 'dist/src/sql/read-worker.js',
    'apply-worker': 'dist/src/sql/apply-worker.js',
  },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: 'dist/src/bundle',
  chunkNames: 'chunk-[hash]',
  // Native addons (and the optional ones their packages look for) are loaded from node_modules.
  external: ['better-sqlite3', 'msgpackr-extract', 'pg-native', 'cpu-features'],
  // The CommonJS packages bundled here (pino, zod's CJS parts) call require for Node's own modules.
  banner: { js: "import { createRequire as __quorateCreateRequire } from 'node:module'; const require = __quorateCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
});
