/**
 * The one-shot deployment state machine, as pure functions: what a booting machine gets, and how a
 * progress event moves its deployment. Re-imaging a machine that already finished is the failure
 * admins fear most, so `done` is sticky: only a new assignment in the config (another sequence, or
 * a bumped `deployment` key) or an admin's redeploy starts another deployment.
 *
 *   (none) ──assigned──▶ pending ──boot handed out──▶ booting ──step started──▶ running(N)
 *   running(N) ──last step finished (or failed with continueOnError)──▶ done
 *   running(N) ──step failed──▶ failed
 *   done / failed ──redeploy or new assignment──▶ pending
 */
import type { Assignment } from './assign.ts';
import type { SequenceDef } from '../config/load.ts';

export const DEPLOYMENT_STATES = ['pending', 'booting', 'running', 'done', 'failed'] as const;
export type DeploymentState = (typeof DEPLOYMENT_STATES)[number];

/** What the state database knows about a machine's current deployment. */
export interface DeploymentRecord {
  deploymentKey: string | null;
  sequence: string | null;
  state: DeploymentState | null;
  generation: number;
  /** Index of the step running or last reported; null before the first step. */
  step: number | null;
  /** After a reboot step: where the next PXE boot should go while the sequence runs on. */
  resume: 'local' | 'pxe' | null;
}

export type BootPlan =
  | { kind: 'ignore'; reason: string }
  | { kind: 'local'; reason: string }
  | { kind: 'menu'; reason: string }
  | {
      kind: 'deploy';
      sequence: string;
      deploymentKey: string;
      /** A new deployment begins: the caller records it (generation + 1, state pending). */
      start: boolean;
      reason: string;
    };

/** What a machine gets when it boots: pure function of its assignment and its recorded deployment. */
export function planBoot(a: Assignment, rec: DeploymentRecord | undefined, seq: SequenceDef | undefined): BootPlan {
  const rule = a.matchedBy === 'default' ? 'default rule' : a.matchedBy === 'mac-prefix' ? `group ${a.group} (MAC prefix)` : `host entry (by ${a.matchedBy})`;
  if (a.action === 'ignore') return { kind: 'ignore', reason: `${rule}: ignore` };
  if (a.action === 'local') return { kind: 'local', reason: `${rule}: local boot` };
  if (a.action === 'menu') return { kind: 'menu', reason: `${rule}: boot menu` };
  if (!a.sequence || !a.deploymentKey || !seq) return { kind: 'local', reason: `${rule}: sequence missing from config; booting local disk` };
  const deploy = (start: boolean, reason: string): BootPlan => ({ kind: 'deploy', sequence: a.sequence!, deploymentKey: a.deploymentKey!, start, reason });

  if (!rec || rec.deploymentKey === null || rec.state === null) return deploy(true, `${rule}: first deployment of ${a.sequence}`);
  if (rec.deploymentKey !== a.deploymentKey) {
    return deploy(true, `${rule}: assignment changed from ${rec.deploymentKey} to ${a.deploymentKey}`);
  }
  switch (rec.state) {
    case 'pending':
      return deploy(false, `deployment of ${a.sequence} pending`);
    case 'booting':
      return deploy(false, `deployment of ${a.sequence} is booting`);
    case 'running':
      if (rec.resume === 'local') return { kind: 'local', reason: `sequence ${a.sequence} continues on the local disk after its reboot step ${rec.step}` };
      return deploy(false, `deployment of ${a.sequence} resumes at step ${rec.step ?? 0}`);
    case 'done':
      return { kind: 'local', reason: `deployment of ${a.sequence} is done; redeploy to image this machine again` };
    case 'failed':
      if (seq.onFailure === 'retry') return deploy(true, `deployment of ${a.sequence} failed; the sequence says retry`);
      return { kind: 'local', reason: `deployment of ${a.sequence} failed; fix it and redeploy (the sequence says onFailure: local)` };
  }
}

export const EVENT_TYPES = ['started', 'step-started', 'step-progress', 'step-finished', 'step-failed', 'failed', 'log'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface ProgressEvent {
  type: EventType;
  step?: number;
  percent?: number;
  message?: string;
}

export type EventOutcome =
  | { ok: true; record: DeploymentRecord; finished: boolean; summary: string }
  | { ok: false; status: 409 | 422; error: string };

/** Apply a progress report from the deploying machine; refuses reports that do not fit the deployment. */
export function applyEvent(rec: DeploymentRecord | undefined, seq: SequenceDef | undefined, ev: ProgressEvent): EventOutcome {
  if (!rec || rec.state === null || !rec.sequence) return { ok: false, status: 409, error: 'this machine has no deployment' };
  if (rec.state === 'done' || rec.state === 'failed') {
    return { ok: false, status: 409, error: `the deployment is ${rec.state}; an admin must redeploy before new progress is accepted` };
  }
  if (!seq) return { ok: false, status: 409, error: `sequence ${rec.sequence} is no longer in the config` };
  const needsStep = ev.type.startsWith('step-');
  if (needsStep) {
    if (ev.step === undefined) return { ok: false, status: 422, error: `${ev.type} needs "step"` };
    if (ev.step < 0 || ev.step >= seq.steps.length) {
      return { ok: false, status: 422, error: `step ${ev.step} does not exist: sequence ${seq.name} has steps 0-${seq.steps.length - 1}` };
    }
  }
  const next: DeploymentRecord = { ...rec };
  const step = ev.step !== undefined ? seq.steps[ev.step] : undefined;
  const label = step ? `step ${ev.step} (${step.name ?? step.type})` : '';
  switch (ev.type) {
    case 'log':
      return { ok: true, record: next, finished: false, summary: ev.message ?? '' };
    case 'started':
      next.state = 'running';
      next.resume = null;
      return { ok: true, record: next, finished: false, summary: 'sequence started' };
    case 'step-started':
      next.state = 'running';
      next.step = ev.step!;
      next.resume = step?.type === 'reboot' ? (step.into ?? 'local') : null;
      return { ok: true, record: next, finished: false, summary: `${label} started` };
    case 'step-progress':
      next.state = 'running';
      next.step = ev.step!;
      return { ok: true, record: next, finished: false, summary: `${label} ${ev.percent ?? 0}%` };
    case 'step-finished': {
      next.step = ev.step!;
      if (ev.step === seq.steps.length - 1) {
        next.state = 'done';
        next.resume = null;
        return { ok: true, record: next, finished: true, summary: `${label} finished; deployment done` };
      }
      next.state = 'running';
      return { ok: true, record: next, finished: false, summary: `${label} finished` };
    }
    case 'step-failed':
      next.step = ev.step!;
      if (step?.continueOnError) {
        // The sequence goes on past this step; when it was the last one, the deployment is over and
        // must be done, or the next PXE boot would hand the whole sequence out again.
        if (ev.step === seq.steps.length - 1) {
          next.state = 'done';
          next.resume = null;
          return { ok: true, record: next, finished: true, summary: `${label} failed (continueOnError); deployment done with errors` };
        }
        return { ok: true, record: { ...next, state: 'running' }, finished: false, summary: `${label} failed (continueOnError)` };
      }
      next.state = 'failed';
      next.resume = null;
      return { ok: true, record: next, finished: true, summary: `${label} failed${ev.message ? `: ${ev.message}` : ''}` };
    case 'failed':
      next.state = 'failed';
      next.resume = null;
      return { ok: true, record: next, finished: true, summary: `deployment failed${ev.message ? `: ${ev.message}` : ''}` };
  }
}
