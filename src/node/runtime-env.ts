// How an agent process is started: the Node.js flags and environment that
// bound its memory. Every launcher of the product uses these: the systemd
// unit (`quorate install-service`), `quorate demo` (npm start), and the
// tests' and benchmarks' harness, so what is measured is what runs.
//
// Both must be set before the process starts (V8 sizes its young generation
// at start, and glibc reads its tunables at the first allocation): the agent
// cannot apply them to itself. docs/performance.md "Memory" has the
// measurements behind each value.

/**
 * V8's young generation may grow to 16 MiB per semi-space by default, and a
 * stream of large Buffers (an upload, a snapshot) grows it to that. 8 MiB
 * keeps the heap about 16 MiB smaller under those streams, while a busy
 * node's requests in flight still mostly die young: at 2 MiB (until the
 * eighth session) a leader under 256 writers scavenged every 5 ms and copied
 * each request's objects into the old generation (a quarter of its time).
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/**
 * glibc serves blocks above a threshold with mmap and returns them to the
 * system when freed; its default threshold rises to the largest block freed
 * so far (up to 32 MiB), after which 1 MiB chunk Buffers come from the heap
 * and freed ones stay resident. A fixed threshold keeps them mmapped. Other
 * C libraries ignore the variable.
 */
export const AGENT_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: '131072',
  // msgpackr (the entry, command and peer-message codec) would load its native
  // string extractor (msgpackr-extract, via detect-libc): 5 ms more at every
  // start, and for this project's small payloads (a key, a 256-byte value)
  // decoding is 10% faster in JavaScript (0.43 against 0.49 µs per entry).
  MSGPACKR_NATIVE_ACCELERATION_DISABLED: 'true',
};

/** The environment for an agent: `base` plus AGENT_ENV, where `base` does not set a value of its own. */
export function agentEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const [k, v] of Object.entries(AGENT_ENV)) if (env[k] === undefined) env[k] = v;
  return env;
}
