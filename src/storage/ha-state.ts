// `<dataDir>/ha-state.json`: the per-node HA identity file, with the fields of
// Digital Rebar's ha-state.json that apply to quorate. No secret is in it:
// `Roots` are the public root certificates trusted now and `Token` is a
// reference to the cluster secret (a hash prefix that changes when it is
// rotated), both only with security.tls "auto" (src/node/tls-auto.ts).
import { join } from 'node:path';
import { z } from 'zod';
import { InvalidHaStateError } from './errors.js';
import { atomicWriteFile } from './fsutil.js';
import { nodeFs } from './fs.js';
import type { StorageFs } from './fs.js';

export const HA_STATE_FILE = 'ha-state.json';

const haStateSchema = z
  .object({
    /** This node's id in the consensus group. */
    ConsensusID: z.string().min(1),
    /** host:port peers reach this node's consensus transport on. */
    ConsensusAddr: z.string().min(1),
    ConsensusEnabled: z.boolean().optional(),
    /** The cluster id (config `cluster.haId`). */
    HaID: z.string().min(1),
    /** A voter that never leads. */
    Observer: z.boolean(),
    /** True while this node is not the active (leading) node. */
    Passive: z.boolean(),
    /** This node's advertised API URL. */
    ApiUrl: z.string().min(1),
    /** The URL of the currently active node, when known. */
    ActiveUri: z.string().optional(),
    Enabled: z.boolean(),
    LoadBalanced: z.boolean().optional(),
    /** Virtual IP (CIDR) and interface, when a VIP is used. */
    VirtAddr: z.string().optional(),
    VirtInterface: z.string().optional(),
    VirtInterfaceScript: z.string().optional(),
    /** security.tls "auto": the cluster CA's roots trusted now (PEM certificates). */
    Roots: z.array(z.string().startsWith('-----BEGIN CERTIFICATE-----')).optional(),
    /** security.tls "auto": `sha256:` and 32 hex digits identifying the cluster secret, never the secret itself. */
    Token: z.string().regex(/^sha256:[0-9a-f]{32}$/).optional(),
  })
  .strict();

export type HaState = z.infer<typeof haStateSchema>;

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Validates and atomically writes `<dir>/ha-state.json`. Returns the path. */
export async function writeHaState(dir: string, fields: HaState, fs: StorageFs = nodeFs): Promise<string> {
  const path = join(dir, HA_STATE_FILE);
  const r = haStateSchema.safeParse(fields);
  if (!r.success) throw new InvalidHaStateError(path, describe(r.error));
  await atomicWriteFile(path, [Buffer.from(`${JSON.stringify(r.data, null, 2)}\n`, 'utf8')], 0o644, fs);
  return path;
}

/** Reads `<dir>/ha-state.json`; undefined when absent; InvalidHaStateError naming the field when wrong. */
export async function readHaState(dir: string, fs: StorageFs = nodeFs): Promise<HaState | undefined> {
  const path = join(dir, HA_STATE_FILE);
  let text: string;
  try {
    text = (await fs.readFile(path)).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidHaStateError(path, `not JSON: ${(err as Error).message}`);
  }
  const r = haStateSchema.safeParse(parsed);
  if (!r.success) throw new InvalidHaStateError(path, describe(r.error));
  return r.data;
}
