import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter, RecentTransactions } from '../../server/dhcp/ratelimit.ts';

const mac = (n: number) => Buffer.from([0x52, 0x54, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);

test('token bucket: burst, refill, one first-refusal per episode', () => {
  const rl = new RateLimiter({ burst: 3, perSecond: 1 });
  const m = mac(1);
  assert.deepEqual([0, 1, 2, 3, 4].map(() => rl.take(m, 1000)), ['ok', 'ok', 'ok', 'limited-first', 'limited']);
  assert.equal(rl.take(m, 1999), 'limited');
  assert.equal(rl.take(m, 2001), 'ok', 'one token back after a second');
  assert.equal(rl.take(m, 2001), 'limited-first', 'a new episode is announced again');
});

test('a flood of new MACs neither grows memory nor frees a looping client', () => {
  const rl = new RateLimiter({ burst: 5, perSecond: 1, slots: 1024 });
  const loop = Buffer.from([2, 0, 0, 0, 0xde, 0xad]);
  let now = 0;
  for (let i = 0; i < 5; i++) rl.take(loop, now);
  // 200,000 distinct MACs in 2 s while the looping client keeps sending: it earns back the 2 tokens
  // that 2 s refill, never a fresh bucket of 5 (which eviction would give it).
  let passed = 0;
  for (let i = 0; i < 200_000; i++) {
    now += 0.01;
    assert.equal(rl.take(mac(i + 1), now), 'ok');
    if (i % 4 === 0 && rl.take(loop, now) === 'ok') passed++;
  }
  assert.ok(passed <= 2, `looping client got ${passed} packets through`);
});

test('RecentTransactions: a retransmission is known, another xid, type, port or MAC is not', () => {
  const r = new RecentTransactions(64);
  const a = Uint8Array.from([0x52, 0x54, 0, 0, 0, 1]);
  const b = Uint8Array.from([0x52, 0x54, 0, 0, 0, 2]);
  assert.equal(r.add(a, 7, 1, 0), true);
  assert.equal(r.add(a, 7, 1, 0), false, 'the same DISCOVER again');
  assert.equal(r.add(a, 7, 3, 0), true, 'its REQUEST');
  assert.equal(r.add(a, 7, 3, 1), true, 'on port 4011');
  assert.equal(r.add(a, 8, 1, 0), true, 'a new xid');
  assert.equal(r.add(b, 7, 1, 0), true, 'another machine');
  assert.equal(r.add(a, 0xffffffff, 1, 0), true);
  assert.equal(r.add(a, 0xffffffff, 1, 0), false, 'xid at 2^32 - 1');
  // A storm of other transactions evicts it: it counts as new again, never as a repeat it is not.
  for (let i = 0; i < 10_000; i++) r.add(Uint8Array.from([2, 0, 0, i >> 16, (i >> 8) & 255, i & 255]), i, 1, 0);
  assert.equal(r.add(a, 7, 1, 0), true);
});
