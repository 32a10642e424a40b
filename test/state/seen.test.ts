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

test('a machine never seen costs no query, yet rows written by this store or by another connection are always found', async () => {
  const { dir, cleanup } = tempDir('sbt-known-');
  try {
    const db = openDatabase(dir);
    const store = new MachineStore(db);
    for (let i = 0; i < 300; i++) store.seen(mac(i), { firmware: 'bios' });
    store.flush();
    assert.equal(store.get(mac(5000)), undefined, 'unknown');
    // Written by this store: a sighting (pending or flushed) and a deployment of a machine never seen.
    store.seen(mac(5000), { firmware: 'uefi-x64' });
    assert.equal(store.get(mac(5000))?.firmware, 'uefi-x64');
    store.startDeployment(mac(5001), 'k', 's', 2, 'assigned');
    assert.equal(store.get(mac(5001))?.state, 'pending');
    // A sighting pending while the set of known machines is rebuilt is still found after its flush.
    store.seen(mac(5002), { firmware: 'bios' });
    const other = openDatabase(dir);
    const otherStore = new MachineStore(other);
    otherStore.startDeployment(mac(6000), 'k', 's', 2, 'another process');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(store.get(mac(6000))?.state, 'pending', 'a row another connection created is noticed (data_version) and found');
    store.flush();
    assert.equal(store.get(mac(5002))?.firmware, 'bios');
    // Rows of the other connection that exist before this store ever looked are found too.
    otherStore.seen(mac(6001), { firmware: 'uefi-arm64' });
    otherStore.flush();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(store.get(mac(6001))?.firmware, 'uefi-arm64');
    other.close();
    db.close();
  } finally {
    cleanup();
  }
});
