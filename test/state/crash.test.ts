import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { tempDir, writeFiles, serverSection, startCli, ADMIN_TOKEN } from '../helpers.ts';

const CONFIG = `${serverSection()}
sequences:
  s: { steps: [{ type: command, run: "a" }, { type: command, run: "b" }] }
machines:
  hosts:
    - { mac: "00:00:00:00:00:01", sequence: s }
    - { mac: "00:00:00:00:00:02", sequence: s }
`;

test('kill -9 while events are being written: every acknowledged event and state survives the restart', async () => {
  const { dir, cleanup } = tempDir('sbt-crash-');
  const file = join(dir, 'swarmboot.yaml');
  writeFiles(dir, { 'swarmboot.yaml': CONFIG });
  const acked: string[] = [];
  let cli = await startCli(['serve', '--config', file, '--no-watch']);
  try {
    for (const mac of ['00:00:00:00:00:01', '00:00:00:00:00:02']) {
      assert.equal((await fetch(`${cli.url}/api/v1/machines/${mac}/sequence`)).status, 200);
    }
    // Machine 2 finishes before the crash: "done" must survive, or it would be re-imaged.
    for (const ev of [{ type: 'step-started', step: 0 }, { type: 'step-finished', step: 0 }, { type: 'step-finished', step: 1 }]) {
      assert.equal((await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:02/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ev) })).status, 200);
    }
    // Eight writers post until the process is killed under them.
    let n = 0;
    let killed = false;
    const writer = async () => {
      while (!killed) {
        const id = `ev-${n++}`;
        try {
          const r = await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:01/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ type: 'step-progress', step: 0, percent: 1, message: id }),
          });
          if (r.status === 200) acked.push(id);
        } catch {
          return; // connection reset by the kill
        }
      }
    };
    const writers = Array.from({ length: 8 }, writer);
    while (acked.length < 300) await new Promise((r) => setTimeout(r, 5));
    cli.child.kill('SIGKILL');
    killed = true;
    await Promise.all(writers);
    await cli.stop();
    assert.ok(acked.length >= 300);

    cli = await startCli(['serve', '--config', file, '--no-watch']);
    const m1 = await (await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:01`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(m1.deployment.state, 'running');
    const m2 = await (await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:02`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(m2.deployment.state, 'done');
    assert.equal(m2.assignment.nextBoot, 'local', 'the finished machine is not re-imaged after the crash');
    const seq2 = await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:02/sequence`);
    assert.equal(seq2.status, 409);

    const db = new DatabaseSync(join(dir, 'data', 'swarmboot.db'), { readOnly: true });
    const stored = new Set((db.prepare("SELECT message FROM machine_events WHERE mac = '00:00:00:00:00:01' AND type = 'step-progress'").all() as Array<{ message: string }>).map((r) => r.message));
    db.close();
    const lost = acked.filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], `${lost.length} acknowledged events lost`);
  } finally {
    await cli.stop();
    cleanup();
  }
});
