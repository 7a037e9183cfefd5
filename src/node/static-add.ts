// "The static way" of adding a node (RP-PAM "Adding More Nodes": list it in
// every node's cluster.peerEndpoints, restart them one at a time) is refused,
// precisely, rather than done. Why not automatic: a fresh node numbers the
// cluster from its own, grown, sorted peer list (./members.ts), so its id may
// be an existing member's id and its other peers' ids shift; it cannot learn
// an id the leader allocated before it first speaks (the join exchange,
// ./join-agent.ts, is how a node does that). The existing members keep their
// ids (bootstrap.json is written once and kept), so their restarts are safe.
// The acceptor therefore refuses such a node with a reason that says to run
// `quorate enroll`:
// - an id the cluster does not know: judgeHello's peer_unknown (transport);
// - a known id under another name and another data dir: identity_mismatch
//   (here), so the newcomer never passes for the member whose id it computed
//   (it would otherwise look like that member back with a wiped data dir);
// - an id the acceptor is not: wrong_node (transport), with the same hint.
import type { Member } from '../raft/index.js';

export const ENROLL_HINT =
  'a node listed in cluster.peerEndpoints of a running cluster is not added by that (it numbers the peers from its own list); ' +
  'stop it, empty its node.dataDir, and add it with `quorate join-token create` on a member and `quorate enroll` (docs/operations.md "Add a node")';

/**
 * Why an authenticated dialer that claims member id `fromId` is not that
 * member: its name and its data dir's incarnation both differ from what the
 * membership records. undefined when it may be (either matches, or nothing is
 * recorded to compare).
 */
export function staticAddProblem(record: Member | undefined, hello: { readonly fromId: number; readonly fromName: string; readonly incarnation: string }): string | undefined {
  if (record?.name === undefined || record.incarnation === undefined || hello.incarnation === '') return undefined;
  if (record.name === hello.fromName || record.incarnation === hello.incarnation) return undefined;
  return `node ${JSON.stringify(hello.fromName)} claims id ${hello.fromId}, which the membership records for node ${JSON.stringify(record.name)} ` +
    `(data dir ${record.incarnation}, this one ${hello.incarnation}): ${ENROLL_HINT}`;
}
