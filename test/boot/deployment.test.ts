import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyEvent, planBoot, type DeploymentRecord, type DeploymentState } from '../../boot/deployment.ts';
import type { Assignment } from '../../boot/assign.ts';
import type { SequenceDef } from '../../config/load.ts';

const seq: SequenceDef = {
  name: 'win',
  variables: {},
  onFailure: 'local',
  steps: [
    { type: 'command', run: 'a' },
    { type: 'reboot', into: 'local' },
    { type: 'command', run: 'b', continueOnError: true },
    { type: 'command', run: 'c' },
  ],
};
const assigned: Assignment = { matchedBy: 'mac', action: 'sequence', sequence: 'win', deploymentKey: 'win', labels: {}, variables: {} };
const rec = (state: DeploymentState | null, over: Partial<DeploymentRecord> = {}): DeploymentRecord => ({
  deploymentKey: 'win',
  sequence: 'win',
  state,
  generation: 1,
  step: null,
  resume: null,
  ...over,
});

test('a never-seen assigned machine starts its first deployment', () => {
  const p = planBoot(assigned, undefined, seq);
  assert.equal(p.kind, 'deploy');
  assert.ok(p.kind === 'deploy' && p.start);
});

test('pending and booting machines continue the same deployment (no new generation)', () => {
  for (const s of ['pending', 'booting'] as const) {
    const p = planBoot(assigned, rec(s), seq);
    assert.ok(p.kind === 'deploy' && !p.start, s);
  }
});

test('a running machine resumes unless its last step was a reboot into the local disk', () => {
  const p = planBoot(assigned, rec('running', { step: 0 }), seq);
  assert.ok(p.kind === 'deploy' && !p.start);
  const afterReboot = planBoot(assigned, rec('running', { step: 1, resume: 'local' }), seq);
  assert.equal(afterReboot.kind, 'local');
  const pxe = planBoot(assigned, rec('running', { step: 1, resume: 'pxe' }), seq);
  assert.equal(pxe.kind, 'deploy');
});

test('a finished machine boots its local disk: never re-imaged by accident', () => {
  const p = planBoot(assigned, rec('done'), seq);
  assert.equal(p.kind, 'local');
  assert.match(p.reason, /done; redeploy/);
});

test('a failed machine boots local by default, and retries when the sequence says so', () => {
  assert.equal(planBoot(assigned, rec('failed'), seq).kind, 'local');
  const p = planBoot(assigned, rec('failed'), { ...seq, onFailure: 'retry' });
  assert.ok(p.kind === 'deploy' && p.start);
});

test('a changed assignment starts a new deployment even after done', () => {
  const p = planBoot({ ...assigned, deploymentKey: 'win#2' }, rec('done'), seq);
  assert.ok(p.kind === 'deploy' && p.start);
  assert.match(p.reason, /assignment changed from win to win#2/);
});

test('ignore, local and menu rules never deploy, whatever the state', () => {
  for (const action of ['ignore', 'local', 'menu'] as const) {
    for (const s of [null, 'pending', 'running', 'done', 'failed'] as const) {
      const p = planBoot({ ...assigned, action, sequence: undefined, deploymentKey: undefined } as Assignment, rec(s), seq);
      assert.equal(p.kind, action, `${action}/${s}`);
    }
  }
});

test('events move the deployment; finishing the last step marks it done', () => {
  let r = rec('booting');
  const steps = [
    { type: 'started' as const },
    { type: 'step-started' as const, step: 0 },
    { type: 'step-progress' as const, step: 0, percent: 50 },
    { type: 'step-finished' as const, step: 0 },
    { type: 'step-started' as const, step: 1 },
  ];
  for (const ev of steps) {
    const o = applyEvent(r, seq, ev);
    assert.ok(o.ok, JSON.stringify(o));
    r = o.record;
  }
  assert.equal(r.state, 'running');
  assert.equal(r.resume, 'local', 'a reboot step in progress sends the next PXE boot to the disk');
  let o = applyEvent(r, seq, { type: 'step-started', step: 2 });
  assert.ok(o.ok);
  assert.equal(o.record.resume, null);
  o = applyEvent(o.record, seq, { type: 'step-failed', step: 2, message: 'no office' });
  assert.ok(o.ok);
  assert.equal(o.record.state, 'running', 'continueOnError keeps going');
  o = applyEvent(o.record, seq, { type: 'step-finished', step: 3 });
  assert.ok(o.ok && o.finished);
  assert.equal(o.record.state, 'done');
});

test('a failed step without continueOnError fails the deployment', () => {
  const o = applyEvent(rec('running'), seq, { type: 'step-failed', step: 0, message: 'disk' });
  assert.ok(o.ok);
  assert.equal(o.record.state, 'failed');
});

test('a last step that fails with continueOnError ends the deployment as done: the next boot is local', () => {
  const lastSoft: SequenceDef = { ...seq, steps: [{ type: 'command', run: 'a' }, { type: 'command', run: 'b', continueOnError: true }] };
  const o = applyEvent(rec('running', { step: 1 }), lastSoft, { type: 'step-failed', step: 1, message: 'optional tool missing' });
  assert.ok(o.ok && o.finished);
  assert.equal(o.record.state, 'done');
  assert.match(o.summary, /done with errors/);
  const next = planBoot(assigned, o.record, lastSoft);
  assert.equal(next.kind, 'local', 'a finished machine is never handed its sequence again');
});

test('events for finished or unknown deployments and bad steps are refused', () => {
  for (const s of ['done', 'failed'] as const) {
    const o = applyEvent(rec(s), seq, { type: 'step-started', step: 0 });
    assert.ok(!o.ok && o.status === 409, s);
  }
  const none = applyEvent(undefined, seq, { type: 'started' });
  assert.ok(!none.ok && none.status === 409);
  const bad = applyEvent(rec('running'), seq, { type: 'step-started', step: 9 });
  assert.ok(!bad.ok && bad.status === 422);
  const missing = applyEvent(rec('running'), seq, { type: 'step-finished' });
  assert.ok(!missing.ok && missing.status === 422);
});
