// The role vocabulary in code: config `node.role` ↔ membership role ↔ the
// `role` status shows. The table is written down once, for operators, in
// docs/concepts.md "Roles"; this file is the only place the mapping is coded
// (registry.ts and status.ts call it), so change both together.
import type { NodeRoleName } from '../api/ports.js';
import type { MemberRole } from '../raft/index.js';

/** A role a node's config can ask for (`node.role`, announced in the handshake). */
export type ConfigRole = 'voter' | 'observer' | 'dr';

/** Config role → membership role (dr = learner); undefined for anything else (e.g. '' in a handshake). */
export function memberRole(r: string | undefined): MemberRole | undefined {
  if (r === 'voter' || r === 'observer') return r;
  if (r === 'dr') return 'learner';
  return undefined;
}

/** Membership role → the config word operators know (learner = dr), for log lines. */
export function configRole(r: MemberRole): ConfigRole {
  return r === 'learner' ? 'dr' : r;
}

/** What decides a member's status role besides its membership role. */
export interface RoleFacts {
  /** It is the leader this node knows. */
  readonly leads: boolean;
  /** Its member record has a catch-up gate (it came back with a new data dir). */
  readonly catchingUp: boolean;
  /** It is this node and it is campaigning (pre-candidate or candidate). */
  readonly campaigning: boolean;
}

/** Membership role (undefined = not a member) + facts → the role status shows. */
export function statusRole(role: MemberRole | undefined, f: RoleFacts): NodeRoleName {
  if (role === undefined) return 'removed';
  if (f.leads) return 'primary';
  if (role === 'learner') return f.catchingUp ? 'rejoining' : 'dr';
  if (role === 'observer') return 'observer';
  if (f.campaigning) return 'candidate';
  return 'standby';
}
