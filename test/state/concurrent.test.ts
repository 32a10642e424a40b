import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { tempDir, writeFiles, serverSection, startCli, ADMIN_TOKEN, NODE, ROOT } from '../helpers.ts';

const CONFIG = `${serverSection()}
sequences:
  s: { steps: [{ type: command, run: "a" }, { type: command, run: "b" }] }
machines:
  hosts:
    - { mac: "00:00:00:00:00:01", sequence: s }
`;

/**
 * A second process writing the same database while the daemon takes event posts: what happens when
 * an admin runs `swarmboot content scan` or a script against the state next to the running daemon.
 * Neither side may fail with "database is locked", and nothing may be lost.
 */
const SECOND_WRITER = `
import { openDatabase } from ${JSON.stringify(join(ROOT, 'state/db.ts'))};
import { MachineStore } from ${JSON.stringify(join(ROOT, 'state/machines.ts'))};
const db = openDatabase(process.argv[1]);
const store = new MachineStore(db);
const mac = '00:00:00:00:00:99';
for (let i = 0; i < 150; i++) {
  store.seen(mac, { firmware: 'bios', ip: '10.0.0.' + (i % 250) });
  store.startDeployment(mac, 'k' + i, 's', 2, 'writer ' + i);
}
db.close();
process.stdout.write('ok');
`;

test('concurrent writers: API posts from many clients and a second process on the same database lose nothing', async () => {
  const { dir, cleanup } = tempDir('sbt-conc-');
  const file = join(dir, 'swarmboot.yaml');
  writeFiles(dir, { 'swarmboot.yaml': CONFIG });
  const cli = await startCli(['serve', '--config', file, '--no-watch']);
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  try {
    const mac = '00:00:00:00:00:01';
    assert.equal((await fetch(`${cli.url}/api/v1/machines/${mac}/sequence`)).status, 200);

    const writer = spawn(NODE, ['--input-type=module', '-e', SECOND_WRITER, join(dir, 'data')], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let wout = '';
    writer.stdout.on('data', (b: Buffer) => (wout += b.toString()));
    writer.stderr.on('data', (b: Buffer) => (wout += b.toString()));
    const writerDone = new Promise<number | null>((r) => writer.once('exit', r));

    const N = 450;
    const posts = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        fetch(`${cli.url}/api/v1/machines/${mac}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'step-progress', step: 0, percent: 1, message: `p${i}` }),
        }).then((r) => r.status),
      ),
    );
    assert.equal(await writerDone, 0, `second writer failed:\n${wout}`);
    assert.deepEqual([...new Set(posts)], [200]);

    // Page through the whole history: every post is there exactly once.
    const seen = new Set<string>();
    let before: number | null | undefined;
    let pages = 0;
    do {
      const q = before ? `?limit=100&before=${before}` : '?limit=100';
      const page = (await (await fetch(`${cli.url}/api/v1/machines/${mac}/events${q}`, { headers: auth })).json()) as { events: Array<{ type: string; message: string | null }>; next: number | null };
      for (const e of page.events) if (e.type === 'step-progress') seen.add(e.message!);
      before = page.next;
      pages++;
    } while (before && pages < 20);
    assert.equal(seen.size, N, 'every acknowledged event is stored once');
    assert.ok(pages >= 5, 'the history is longer than one page');
    assert.equal((await fetch(`${cli.url}/api/v1/machines/${mac}/events`)).status, 401, 'the history is for admins');

    const other = (await (await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:99`, { headers: auth })).json()) as { deployment: { generation: number } };
    assert.equal(other.deployment.generation, 150, "the second process's writes are all there");
  } finally {
    await cli.stop();
    cleanup();
  }
});
