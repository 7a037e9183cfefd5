// `npm run bench:files`: replicated file uploads on a three-node cluster (real
// processes, fsync on): one file of each size in BENCH_FILE_MB (MiB, default
// 64,1024; BENCH_FILES_MB is read too), each streamed to the leader of a
// cluster of its own (so that one upload's memory does not carry into the
// next one's figure); time, MiB/s and each node's RSS growth (the target is
// under 64 MiB whatever the file's size), peak V8 heap and external memory.
// BENCH_NODE_ARGS (space-separated) are passed to node for each agent.
// Prints one JSON report.
import { TestCluster } from '../test/integration/harness.js';
import { uploadRun } from './files-upload.js';

const SIZES = (process.env['BENCH_FILE_MB'] ?? process.env['BENCH_FILES_MB'] ?? '64,1024').split(',').map(Number);
const NODE_ARGS = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((x) => x !== '');
const report: Record<string, unknown> = { benchmark: 'files', nodes: 3, nodeVersion: process.version, nodeArgs: NODE_ARGS };
const runs = [];
for (const mib of SIZES) {
  const c = await TestCluster.start({ nodes: 3, nodeArgs: NODE_ARGS });
  try {
    await c.waitLeader(20_000);
    // Let the nodes settle after their start before the RSS before the upload is read.
    await new Promise((r) => setTimeout(r, 2000));
    runs.push(await uploadRun(c, mib));
  } finally {
    await c.stop();
  }
}
report['uploads'] = runs;
console.log(JSON.stringify(report, null, 2));
