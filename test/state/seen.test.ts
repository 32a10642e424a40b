import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase } from '../../state/db.ts';
import { MachineStore } from '../../state/machines.ts';
import { tempDir } from '../helpers.ts';

const mac = (i: number) => `02:00:00:${[i >> 16, (i >> 8) & 255, i & 255].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;

test('sightings are written behind, in batches, and never lost by a reader or a clean close', () => {
  const { dir, cleanup } = tempDir('sbt-seen-');
  try {
    let db = openDatabase(dir);
    let store = new MachineStore(db);
    store.seen(mac(1), { firmware: 'bios', uuid: '4c4c4544-0042-3510-8052-b4c04f4d4d31' });
    store.seen(mac(1), { ip: '10.66.0.50' });
    const one = store.get(mac(1));
    assert.equal(one?.firmware, 'bios', 'a reader of that machine sees its pending sighting');
    assert.equal(one?.ip, '10.66.0.50', 'facts of several sightings are merged');
    assert.equal(one?.uuid, '4c4c4544-0042-3510-8052-b4c04f4d4d31');

    // A storm of new machines: more than one batch; every one is in the list.
    for (let i = 2; i < 4502; i++) store.seen(mac(i), { firmware: i % 2 ? 'bios' : 'uefi-x64' });
    assert.equal(store.list().length, 4501);
    assert.deepEqual(store.countByState(), [{ state: 'none', count: 4501 }]);

    // Pending sightings survive a clean shutdown (the daemon flushes before closing the database).
    store.seen(mac(9999), { firmware: 'uefi-arm64' });
    store.flush();
    db.close();
    db = openDatabase(dir);
    store = new MachineStore(db);
    assert.equal(store.get(mac(9999))?.firmware, 'uefi-arm64');
    db.close();
  } finally {
    cleanup();
  }
});

test('a deployment started right after a sighting does not trip over the batch (no nested transaction)', () => {
  const { dir, cleanup } = tempDir('sbt-seen2-');
  try {
    const db = openDatabase(dir);
    const store = new MachineStore(db);
    store.seen(mac(7), { firmware: 'bios' });
    const m = store.startDeployment(mac(7), 'k', 's', 2, 'test');
    assert.equal(m.state, 'pending');
    assert.ok(store.transition(mac(7), ['pending'], 'booting', 'test'));
    const row = store.get(mac(7))!;
    assert.equal(row.state, 'booting');
    assert.equal(row.firmware, 'bios');
    db.close();
  } finally {
    cleanup();
  }
});
