// Membership: who votes, who counts, who may lead. Pure functions over the
// immutable Membership value; one server changes at a time (dissertation §4.1).
import { InvalidConfChange } from './errors.js';
import type { ConfChange, Member, MemberRole, Membership, NodeId } from './types.js';

export const EMPTY_MEMBERSHIP: Membership = { members: [], removed: [] };

export function roleOf(m: Membership, id: NodeId): MemberRole | undefined {
  for (const mem of m.members) if (mem.id === id) return mem.role;
  return undefined;
}

/** Voters and observers: they vote and count toward quorum. */
export function isVoting(role: MemberRole | undefined): boolean {
  return role === 'voter' || role === 'observer';
}

export function votingIds(m: Membership): NodeId[] {
  return m.members.filter((x) => isVoting(x.role)).map((x) => x.id);
}

export { majority } from './quorum.js';

function sorted(members: Member[]): Member[] {
  return members.sort((a, b) => a.id - b.id);
}

/** Validate and apply one change; throws InvalidConfChange naming what is wrong. */
export function applyConfChange(m: Membership, cc: ConfChange): Membership {
  if (!Number.isSafeInteger(cc.id) || cc.id <= 0) throw new InvalidConfChange(`node id must be a positive integer, got ${cc.id}`);
  const current = roleOf(m, cc.id);
  switch (cc.op) {
    case 'add': {
      if (current !== undefined) throw new InvalidConfChange(`node ${cc.id} is already a member (${current})`);
      if (m.removed.includes(cc.id)) throw new InvalidConfChange(`node id ${cc.id} was removed before and may not be reused`);
      if (cc.member !== undefined) {
        const problem = memberProblem(cc.member);
        if (problem !== undefined) throw new InvalidConfChange(`member record for node ${cc.id}: ${problem}`);
        if (cc.member.id !== cc.id || cc.member.role !== cc.role) throw new InvalidConfChange(`member record (id ${cc.member.id}, ${cc.member.role}) differs from the change (id ${cc.id}, ${cc.role})`);
        return { members: sorted([...m.members, normalizeMember(cc.member)]), removed: m.removed };
      }
      return { members: sorted([...m.members, { id: cc.id, role: cc.role }]), removed: m.removed };
    }
    case 'remove': {
      if (current === undefined) throw new InvalidConfChange(`node ${cc.id} is not a member`);
      const members = m.members.filter((x) => x.id !== cc.id);
      if (!members.some((x) => x.role === 'voter')) throw new InvalidConfChange(`removing node ${cc.id} would leave no voter that can lead`);
      return { members, removed: [...m.removed, cc.id].sort((a, b) => a - b) };
    }
    case 'setRole': {
      if (current === undefined) throw new InvalidConfChange(`node ${cc.id} is not a member`);
      if (current === cc.role) throw new InvalidConfChange(`node ${cc.id} already has role ${cc.role}`);
      // A role change ends any catch-up gate; the other recorded facts stay.
      const members = sorted(m.members.map((x) => (x.id === cc.id ? withoutCatchUp({ ...x, role: cc.role }) : x)));
      if (!members.some((x) => x.role === 'voter')) throw new InvalidConfChange(`node ${cc.id} is the last voter that can lead`);
      return { members, removed: m.removed };
    }
    case 'setMember': {
      if (current === undefined) throw new InvalidConfChange(`node ${cc.id} is not a member`);
      const problem = memberProblem(cc.member);
      if (problem !== undefined) throw new InvalidConfChange(`member record for node ${cc.id}: ${problem}`);
      if (cc.member.id !== cc.id) throw new InvalidConfChange(`member record id ${cc.member.id} differs from the change's id ${cc.id}`);
      const old = m.members.find((x) => x.id === cc.id)!;
      if (sameMember(old, cc.member)) throw new InvalidConfChange(`node ${cc.id} already has that record`);
      const members = sorted(m.members.map((x) => (x.id === cc.id ? normalizeMember(cc.member) : x)));
      if (!members.some((x) => x.role === 'voter')) throw new InvalidConfChange(`node ${cc.id} is the last voter that can lead`);
      return { members, removed: m.removed };
    }
  }
}

function withoutCatchUp(x: Member): Member {
  const { catchUpTo: _drop, ...rest } = x;
  return rest;
}

/** The member with only the fields that are set, in a fixed order (the record is compared and encoded). */
export function normalizeMember(x: Member): Member {
  return {
    id: x.id,
    role: x.role,
    ...(x.incarnation !== undefined ? { incarnation: x.incarnation } : {}),
    ...(x.apiUrl !== undefined ? { apiUrl: x.apiUrl } : {}),
    ...(x.peerUrl !== undefined ? { peerUrl: x.peerUrl } : {}),
    ...(x.name !== undefined ? { name: x.name } : {}),
    ...(x.catchUpTo !== undefined ? { catchUpTo: x.catchUpTo } : {}),
  };
}

export function sameMember(a: Member, b: Member): boolean {
  return a.id === b.id && a.role === b.role && a.incarnation === b.incarnation && a.apiUrl === b.apiUrl && a.peerUrl === b.peerUrl && a.name === b.name && a.catchUpTo === b.catchUpTo;
}

const META_MAX = 256;

/** Why a member record is invalid, or undefined. Shared by every decoder of memberships. */
export function memberProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null) return 'must be an object';
  const r = v as Record<string, unknown>;
  if (!isId(r['id'])) return 'id must be a positive integer';
  if (typeof r['role'] !== 'string' || !ROLES.includes(r['role'])) return `role must be one of ${ROLES.join(', ')}`;
  for (const k of ['incarnation', 'apiUrl', 'peerUrl', 'name'] as const) {
    const f = r[k];
    if (f !== undefined && (typeof f !== 'string' || f.length === 0 || f.length > META_MAX)) return `${k} must be a non-empty string of at most ${META_MAX} characters`;
  }
  const c = r['catchUpTo'];
  if (c !== undefined && !(typeof c === 'number' && Number.isSafeInteger(c) && c >= 0)) return 'catchUpTo must be a non-negative integer';
  for (const k of Object.keys(r)) {
    if (!['id', 'role', 'incarnation', 'apiUrl', 'peerUrl', 'name', 'catchUpTo'].includes(k)) return `unknown field ${k}`;
  }
  return undefined;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A conf entry: the change (for logs and audits) and the membership it results in. */
export interface ConfEntry {
  readonly change: ConfChange;
  readonly membership: Membership;
}

export function encodeConfEntry(ce: ConfEntry): Uint8Array {
  return enc.encode(JSON.stringify(ce));
}

const ROLES: readonly string[] = ['voter', 'observer', 'learner'];

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

function parseChange(v: unknown): ConfChange {
  if (typeof v !== 'object' || v === null) throw new InvalidConfChange('conf entry field change must be an object');
  const o = v as Record<string, unknown>;
  const id = o['id'];
  if (!isId(id)) throw new InvalidConfChange('conf entry field change.id must be a positive integer');
  const op = o['op'];
  if (op === 'remove') return { op, id };
  if (op === 'setMember') {
    const problem = memberProblem(o['member']);
    if (problem !== undefined) throw new InvalidConfChange(`conf entry field change.member: ${problem}`);
    return { op, id, member: normalizeMember(o['member'] as Member) };
  }
  const role = o['role'];
  if ((op === 'add' || op === 'setRole') && typeof role === 'string' && ROLES.includes(role)) {
    if (op === 'add' && o['member'] !== undefined) {
      const problem = memberProblem(o['member']);
      if (problem !== undefined) throw new InvalidConfChange(`conf entry field change.member: ${problem}`);
      return { op, id, role: role as MemberRole, member: normalizeMember(o['member'] as Member) };
    }
    return { op, id, role: role as MemberRole };
  }
  throw new InvalidConfChange(`conf entry field change has invalid op/role: ${JSON.stringify(o)}`);
}

function parseMembership(v: unknown): Membership {
  if (typeof v !== 'object' || v === null) throw new InvalidConfChange('conf entry field membership must be an object');
  const o = v as Record<string, unknown>;
  const members = o['members'];
  const removed = o['removed'];
  if (!Array.isArray(members) || !Array.isArray(removed)) throw new InvalidConfChange('conf entry field membership needs members and removed arrays');
  const out: Member[] = members.map((m: unknown, i) => {
    const problem = memberProblem(m);
    if (problem !== undefined) throw new InvalidConfChange(`conf entry field membership.members[${i}]: ${problem}`);
    return normalizeMember(m as Member);
  });
  removed.forEach((id: unknown, i) => {
    if (!isId(id)) throw new InvalidConfChange(`conf entry field membership.removed[${i}] must be a positive integer`);
  });
  return { members: out, removed: removed as number[] };
}

/** Decode a conf entry's data; throws InvalidConfChange naming the bad field. */
export function decodeConfEntry(data: Uint8Array): ConfEntry {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(data));
  } catch {
    throw new InvalidConfChange('conf entry data is not valid JSON');
  }
  if (typeof v !== 'object' || v === null) throw new InvalidConfChange('conf entry data is not an object');
  const o = v as Record<string, unknown>;
  return { change: parseChange(o['change']), membership: parseMembership(o['membership']) };
}
