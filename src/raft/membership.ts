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

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

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
      const members = sorted(m.members.map((x) => (x.id === cc.id ? { id: x.id, role: cc.role } : x)));
      if (!members.some((x) => x.role === 'voter')) throw new InvalidConfChange(`node ${cc.id} is the last voter that can lead`);
      return { members, removed: m.removed };
    }
  }
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
  const role = o['role'];
  if ((op === 'add' || op === 'setRole') && typeof role === 'string' && ROLES.includes(role)) {
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
    const r = m as Record<string, unknown> | null;
    if (!r || !isId(r['id']) || typeof r['role'] !== 'string' || !ROLES.includes(r['role'])) {
      throw new InvalidConfChange(`conf entry field membership.members[${i}] is invalid`);
    }
    return { id: r['id'], role: r['role'] as MemberRole };
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
