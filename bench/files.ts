// `npm run bench:files`: replicated file uploads on a three-node cluster (real
// processes, fsync on): BENCH_FILES_MB MiB files (default 64,256), each
// streamed to the leader; time, MiB/s and each node's RSS growth (the target
// is under 64 MiB whatever the file's size). Prints one JSON report.
import { TestCluster } from '../test/integration/harness.js';
import { uploadRun } from './files-upload.js';

const SIZES = (process.env['BENCH_FILES_MB'] ?? '64,256').split(',').map(Number);
const report: Record<string, unknown> = { benchmark: 'files', nodes: 3, nodeVersion: process.version };
const c = await TestCluster.start({ nodes: 3 });
try {
  const runs = [];
  for (const mib of SIZES) runs.push(await uploadRun(c, mib));
  report['uploads'] = runs;
} finally {
  await c.stop();
}
console.log(JSON.stringify(report, null, 2));
