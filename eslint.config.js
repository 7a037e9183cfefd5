// Lint: typescript-eslint's recommended rules everywhere, plus a fence around
// src/raft so the consensus core stays pure and deterministic, and one around
// src/api so it reaches a node only through its ports.
import tseslint from 'typescript-eslint';

const purity = {
  'no-restricted-imports': ['error', {
    patterns: [
      { group: ['node:*'], message: 'src/raft is pure: no node:* imports (I/O belongs at the edges).' },
      { group: ['fs', 'net', 'os', 'path', 'crypto', 'child_process', 'timers', 'events', 'http', 'https', 'tls', 'dgram'], message: 'src/raft is pure: no Node built-ins.' },
    ],
  }],
  'no-restricted-globals': ['error',
    { name: 'Date', message: 'src/raft has no clock: time is tick().' },
    { name: 'setTimeout', message: 'src/raft has no timers: time is tick().' },
    { name: 'setInterval', message: 'src/raft has no timers: time is tick().' },
    { name: 'setImmediate', message: 'src/raft has no timers.' },
    { name: 'queueMicrotask', message: 'src/raft is synchronous.' },
    { name: 'process', message: 'src/raft must not read process state.' },
    { name: 'Promise', message: 'src/raft is synchronous: no Promises.' },
    { name: 'performance', message: 'src/raft has no clock.' },
    { name: 'require', message: 'src/raft is pure ESM.' },
  ],
  'no-restricted-properties': ['error',
    { object: 'Math', property: 'random', message: 'src/raft takes randomness from the injected Random.' },
    { object: 'Date', property: 'now', message: 'src/raft has no clock.' },
  ],
  'no-restricted-syntax': ['error',
    { selector: 'FunctionDeclaration[async=true], ArrowFunctionExpression[async=true], FunctionExpression[async=true]', message: 'src/raft is synchronous: no async functions.' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'web/dist/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  // The in-memory cluster the raft tests drive is held to the same fence.
  { files: ['src/raft/**/*.ts', 'test/support/raft.ts'], ignores: ['src/raft/**/*.test.ts'], rules: purity },
  // The API declares what it needs of a node (src/api/ports.ts) and never
  // imports the node's implementation; only the node's error codes cross.
  {
    files: ['src/api/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['**/node/*', '!**/node/errors.js'], message: 'src/api must not import src/node (only its error codes): declare what the API needs in src/api/ports.ts.' }],
      }],
    },
  },
);
