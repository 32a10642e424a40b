import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MacSet } from '../../state/mac-set.ts';

test('MacSet has exactly the members a Set<string> would, MAC-shaped or not', () => {
  const set = new MacSet();
  const ref = new Set<string>();
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  const mac = (hi: number, lo: number) => [hi >> 8, hi & 255, lo >>> 24, (lo >> 16) & 255, (lo >> 8) & 255, lo & 255].map(hex).join(':');
  let seed = 1;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const members: string[] = [
    mac(0, 0), mac(0xffff, 0xffffffff), mac(0x0200, 1), // the extremes of the 48 bits
    '02:00:00:00:00:0A', '02-00-00-00-00-01', '0200.0000.0001', '', 'zz:00:00:00:00:01', '02:00:00:00:00:1', '02:00:00:00:00:001', // other forms
  ];
  for (let i = 0; i < 30_000; i++) members.push(mac(0x0200, i)); // one vendor, consecutive: the storm
  for (let i = 0; i < 30_000; i++) members.push(mac(rnd() & 0xffff, rnd())); // anywhere
  const absent = ['02:00:00:00:00:0a', '02:00:00:00:00:01 ', mac(0x0201, 5), mac(0x0200, 30_000), '02:00:00:00:00:0B', 'ff:ff:ff:ff:ff:fe'];
  for (const [i, m] of members.entries()) {
    set.add(m);
    ref.add(m);
    if (i % 997 === 0) set.add(m); // adding again changes nothing
  }
  assert.equal(set.size, ref.size);
  for (const m of members) assert.ok(set.has(m), m);
  for (const m of absent) assert.equal(set.has(m), ref.has(m), m);
  const odd = [null, Buffer.from('02:00:00:00:00:01')] as unknown as string[]; // keys a hand-written row could have
  for (const m of odd) {
    assert.equal(set.has(m), false);
    set.add(m);
    assert.equal(set.has(m), true);
  }
  for (let i = 0; i < 20_000; i++) {
    const m = mac(rnd() & 0xffff, rnd());
    assert.equal(set.has(m), ref.has(m), m);
  }
});
