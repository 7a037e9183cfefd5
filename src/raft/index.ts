// Public surface of the consensus core.
export { RawNode } from './rawnode.js';
export type { ProposeResult } from './rawnode.js';
export type { ConfEntry } from './membership.js';
export * from './types.js';
export * from './errors.js';
export { SeededRandom } from './prng.js';
export { encodeConfEntry, decodeConfEntry, applyConfChange, votingIds, roleOf, isVoting, EMPTY_MEMBERSHIP } from './membership.js';
export { majority, writeQuorum, failureTolerance, quorumMet } from './quorum.js';
