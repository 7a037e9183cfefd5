// Bundles the dashboard (web/) into dist/web: one app.js (esbuild, Preact),
// app.css and index.html. Served by every node at /ui/ (src/api/ui.ts).
// Type-checking is `tsc -p web/tsconfig.json` (part of `npm run build`).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist/web', { recursive: true });
await build({
  entryPoints: ['web/src/main.tsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outfile: 'dist/web/app.js',
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync('web/index.html', 'dist/web/index.html');
copyFileSync('web/app.css', 'dist/web/app.css');
