// Operator actions: each one is prepared (a preflight check against the API),
// shown with its effect and the equivalent CLI command, confirmed, then sent;
// the API's answer (or refusal) is shown as it came. Only offered to tokens
// whose role the API accepts for the call (admin for cluster administration).
import { useState } from 'preact/hooks';
import { ApiFailure, type Connection, type NodeView, type Status } from './api';
import { isVoter } from './model';

export interface Pending {
  readonly title: string;
  readonly effect: string;
  readonly warning?: string;
  readonly cli: string;
  /** Sends it; a pause or drain gets the reason and duration typed in the confirmation. */
  readonly run: (hold: HoldFields) => Promise<unknown>;
  /** Pause and drain: the confirmation asks for a reason and a duration (the API's `reason`, `expiresInMs`). */
  readonly hold?: boolean;
  /** The answer in words (default: "done"). */
  readonly summarize?: (answer: Record<string, unknown>) => string;
  /** Typed confirmation: Confirm is enabled only once this exact text is typed (e.g. the node name). */
  readonly typed?: string;
}

export interface Outcome { readonly ok: boolean; readonly text: string }

/** The API fields of a pause or drain's reason and expiry. */
export interface HoldFields { readonly reason?: string; readonly expiresInMs?: number }

/** "30m", "2h", "90s", "1.5h"; a bare number is seconds (as the CLI's --for). Undefined when it is not a duration. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return undefined;
  const unit = m[2] ?? 's';
  return Math.round(Number(m[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000));
}

/** The CLI flags of a reason and a duration, as typed. */
function holdFlags(reason: string, duration: string): string {
  return `${reason.trim() !== '' ? ` --reason ${JSON.stringify(reason.trim())}` : ''}${duration.trim() !== '' ? ` --for ${duration.trim()}` : ''}`;
}

/** Builds the pending switchover to `to`, with a preflight of who is caught up. */
export async function prepareSwitchover(conn: Connection, lead: Status, to: string): Promise<Pending> {
  let warning: string | undefined;
  try {
    const fs = await conn.call<{ caughtUp: string[] }>('GET', '/v1/cluster/failover-safe?waitMs=500');
    if (!fs.caughtUp.includes(to)) warning = `${to} is not caught up with the leader now (caught up: ${fs.caughtUp.join(', ') || 'none'}); the leader will refuse the transfer and say how far behind it is.`;
  } catch (e) {
    warning = `preflight failed: ${(e as Error).message}`;
  }
  if (lead.failureTolerance === 0) warning = `${warning ? `${warning} ` : ''}The cluster tolerates no failure now: a problem during the transfer leaves it without a leader until it is resolved.`;
  return {
    title: `Switch leadership to ${to}`,
    effect: `${lead.nodeName} hands leadership to ${to}. Writes pause for less than one election timeout; none is lost.`,
    ...(warning !== undefined ? { warning } : {}),
    cli: `quorate switchover --to ${to}`,
    run: () => conn.call('POST', '/v1/cluster/switchover', { to }),
    summarize: (a) => `${String(a['to'])} leads in term ${String(a['term'])} (writes paused ${String(a['pauseMs'])} ms)`,
  };
}

const modes = (a: Record<string, unknown>): string => `failover ${String(a['failoverMode'])}${a['paused'] === true ? ', paused' : ''}; drained: ${Array.isArray(a['drained']) && a['drained'].length > 0 ? a['drained'].join(', ') : 'none'}`;

export function preparePause(conn: Connection, lead: Status): Pending {
  return lead.paused
    ? { title: 'Resume automatic failover', effect: 'Nodes campaign again on their own when the leader is lost.', cli: 'quorate resume', run: () => conn.call('POST', '/v1/cluster/resume'), summarize: modes }
    : { title: 'Pause automatic failover (maintenance)', effect: 'No node campaigns on its own until resumed (or until the duration has passed: the leader resumes then): if the leader fails, the cluster stays without a leader until `quorate failover` or resume. Switchover still works.', cli: 'quorate pause', hold: true, run: (h) => conn.call('POST', '/v1/cluster/pause', h), summarize: modes };
}

export function prepareDrain(conn: Connection, lead: Status, node: string): Pending {
  const drained = (lead.drained ?? []).includes(node);
  if (drained) return { title: `Undrain ${node}`, effect: `${node} may lead again (campaign by itself, be a switchover target).`, cli: `quorate undrain ${node}`, run: () => conn.call('POST', '/v1/cluster/drain', { nodeName: node, drained: false }), summarize: modes };
  const leading = lead.nodeName === node && lead.raftRole === 'leader';
  const others = lead.peers.filter((p) => isVoter(p) && p.nodeName !== node && !p.drained && p.status === 'healthy');
  return {
    title: `Drain ${node}`,
    effect: `${node} keeps replicating and voting but never leads.${leading ? ' It leads now: leadership moves to another voter first.' : ''}`,
    ...(others.length === 0 ? { warning: 'No other healthy, undrained voter could lead: if the leader fails, no automatic failover can happen.' } : {}),
    cli: `quorate drain ${node}`,
    hold: true,
    run: (h) => conn.call('POST', '/v1/cluster/drain', { nodeName: node, drained: true, ...h }),
    summarize: modes,
  };
}

export function Confirm({ pending, onDone, onCancel }: { pending: Pending; onDone: (o: Outcome) => void; onCancel: () => void }) {
  const [busy, setBusy] = useState(false);
  const [typed, setTyped] = useState('');
  const [reason, setReason] = useState('');
  const [duration, setDuration] = useState('');
  const ms = duration.trim() === '' ? undefined : parseDuration(duration);
  const badDuration = pending.hold === true && duration.trim() !== '' && (ms === undefined || ms < 1000 || ms > 720 * 3_600_000);
  const blocked = (pending.typed !== undefined && typed !== pending.typed) || badDuration;
  const go = async (): Promise<void> => {
    setBusy(true);
    try {
      const hold: HoldFields = pending.hold === true ? { ...(reason.trim() !== '' ? { reason: reason.trim() } : {}), ...(ms !== undefined ? { expiresInMs: ms } : {}) } : {};
      const r = (await pending.run(hold)) as Record<string, unknown>;
      onDone({ ok: true, text: `${pending.title}: done${pending.summarize ? `: ${pending.summarize(r)}` : ''}.` });
    } catch (e) {
      const f = e as ApiFailure;
      onDone({ ok: false, text: `${pending.title}: refused${f.code ? ` (${f.code})` : ''}: ${f.message}` });
    }
  };
  return (
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-h">
      <div class="modal-body">
        <h2 id="confirm-h">{pending.title}?</h2>
        <p>{pending.effect}</p>
        {pending.warning ? <p class="warn-text" role="alert">{pending.warning}</p> : null}
        {pending.hold === true ? (
          <div class="hold-fields">
            <p class="inline">
              <label for="confirm-reason">Reason</label>
              <input id="confirm-reason" autoComplete="off" maxLength={500} placeholder="e.g. kernel upgrade" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
            </p>
            <p class="inline">
              <label for="confirm-duration">Ends after</label>
              <input id="confirm-duration" autoComplete="off" placeholder="e.g. 2h or 30m; empty: until resumed" aria-describedby="confirm-duration-help" aria-invalid={badDuration} value={duration} onInput={(e) => setDuration((e.target as HTMLInputElement).value)} />
            </p>
            <p id="confirm-duration-help" class={badDuration ? 'warn-text' : 'muted'}>{badDuration ? 'A duration from 1s to 720h, e.g. 30m or 2h.' : 'The leader ends it by itself when the time is up.'}</p>
          </div>
        ) : null}
        <p>Same as: <code>{pending.hold === true ? `${pending.cli}${holdFlags(reason, duration)}` : pending.cli}</code></p>
        {pending.typed !== undefined ? (
          <p class="inline">
            <label for="confirm-typed">Type <strong>{pending.typed}</strong> to confirm</label>
            <input id="confirm-typed" autoComplete="off" value={typed} onInput={(e) => setTyped((e.target as HTMLInputElement).value)} autoFocus />
          </p>
        ) : null}
        <div class="buttons">
          <button type="button" onClick={onCancel} disabled={busy}>Cancel</button>
          <button type="button" class="primary" onClick={() => void go()} disabled={busy || blocked} autoFocus={pending.typed === undefined}>{busy ? 'Working…' : 'Confirm'}</button>
        </div>
      </div>
    </div>
  );
}

/** The buttons on one node's card (admin only). */
export function CardActions({ conn, view, lead, prepare }: { conn: Connection; view: NodeView; lead: Status | undefined; prepare: (p: Pending | Promise<Pending>) => void }) {
  if (lead === undefined || lead.raftRole !== 'leader' || !view.ok) return null;
  const peer = lead.peers.find((p) => p.nodeName === view.nodeName);
  if (peer === undefined) return null;
  const canLead = isVoter(peer) && !peer.drained && view.nodeName !== lead.nodeName;
  return (
    <div class="card-actions">
      {canLead ? <button type="button" onClick={() => prepare(prepareSwitchover(conn, lead, view.nodeName))} data-action="switchover">Make leader</button> : null}
      {isVoter(peer) ? <button type="button" onClick={() => prepare(prepareDrain(conn, lead, view.nodeName))} data-action="drain">{peer.drained ? 'Undrain' : 'Drain'}</button> : null}
    </div>
  );
}
