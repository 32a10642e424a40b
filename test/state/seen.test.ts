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

test('a flush writes each pending sighting into its own row, whatever the batch size, and only the pending ones', () => {
  const { dir, cleanup } = tempDir('sbt-seen3-');
  try {
    const db = openDatabase(dir);
    let t = Date.parse('2026-01-01T00:00:00.000Z');
    const store = new MachineStore(db, () => new Date(t));
    const uuid = (i: number) => `00000000-0000-0000-0000-${i.toString().padStart(12, '0')}`;
    // Sizes around the statement sizes (one row, powers of two, a whole batch and a batch and a bit).
    let next = 0;
    for (const size of [1, 2, 3, 7, 127, 128, 129, 249, 250, 251, 499, 500, 501]) {
      t += 1000;
      const first = next;
      for (let k = 0; k < size; k++, next++) store.seen(mac(next), { uuid: uuid(next), firmware: `fw-${next}`, ...(next % 3 ? { ip: `10.1.${next >> 8}.${next & 255}` } : {}) });
      store.flush();
      const rows = new Map(store.list().map((r) => [r.mac, r]));
      assert.equal(rows.size, next);
      for (const i of [first, first + (size >> 1), next - 1]) {
        const r = rows.get(mac(i))!;
        assert.equal(r.uuid, uuid(i), `row ${i} of a flush of ${size}`);
        assert.equal(r.firmware, `fw-${i}`);
        assert.equal(r.ip, i % 3 ? `10.1.${i >> 8}.${i & 255}` : null);
        assert.equal(r.model, null);
        assert.equal(r.lastSeen, new Date(t).toISOString());
      }
    }
    // A small flush after a large one writes only what is pending: mac(1) was seen in a large
    // flush and is seen again alone; a stale copy of an earlier batch would set its time back.
    t += 1000;
    store.seen(mac(2000), {});
    store.seen(mac(1), {});
    store.flush();
    t += 1000;
    store.seen(mac(1), {});
    store.flush();
    assert.equal(store.get(mac(1))!.lastSeen, new Date(t).toISOString());
    assert.equal(store.get(mac(2000))!.lastSeen, new Date(t - 1000).toISOString());
    db.close();
  } finally {
    cleanup();
  }
});

test('sightings merge facts: the latest fact wins, a missing fact keeps the known one, first seen stays', () => {
  const { dir, cleanup } = tempDir('sbt-seen4-');
  try {
    const db = openDatabase(dir);
    let t = Date.parse('2026-01-01T00:00:00.000Z');
    const store = new MachineStore(db, () => new Date(t));
    const at = (ms: number) => new Date(ms).toISOString();
    const t0 = t;
    store.seen(mac(1), { uuid: 'u1', firmware: 'bios' });
    store.seen(mac(2)); // no facts at all: a row with the time only
    t += 10;
    store.seen(mac(1), { firmware: 'uefi-x64', ip: '10.0.0.1' }); // same batch: merged
    store.flush();
    let one = store.get(mac(1))!;
    assert.deepEqual([one.uuid, one.firmware, one.ip, one.model], ['u1', 'uefi-x64', '10.0.0.1', null]);
    assert.equal(one.lastSeen, at(t));
    const two = store.get(mac(2))!;
    assert.deepEqual([two.uuid, two.firmware, two.ip, two.model, two.firstSeen, two.lastSeen], [null, null, null, null, at(t0), at(t0)]);
    const firstSeen = one.firstSeen;

    // A later batch: facts it lacks keep their stored value; facts it has replace them.
    t += 1000;
    store.seen(mac(1), { model: 'R640' });
    store.seen(mac(1), { ip: '10.0.0.2' });
    store.flush();
    one = store.get(mac(1))!;
    assert.deepEqual([one.uuid, one.firmware, one.ip, one.model], ['u1', 'uefi-x64', '10.0.0.2', 'R640']);
    assert.equal(one.firstSeen, firstSeen, 'first seen is kept');
    assert.equal(one.lastSeen, at(t));

    // Values are bound, not spliced into SQL or JSON: quotes, backslashes, non-ASCII and NUL survive.
    const odd = `O'Brien "R640" \\ \u00e9\u4e2d\u{1F600} a\u0000b`;
    store.seen(mac(3), { model: odd, uuid: '' });
    store.flush();
    assert.equal(store.get(mac(3))!.model, odd);
    assert.equal(store.get(mac(3))!.uuid, '', 'an empty fact is a fact');
    db.close();
  } finally {
    cleanup();
  }
});
