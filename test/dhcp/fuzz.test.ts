/**
 * Bad input: 100,000+ random and mutated packets through the codec and the whole responder
 * pipeline (decode → validate → rate limit → proxy/full responder → encode). Nothing may throw,
 * hang or escape accounting: every packet is answered, handled (RELEASE/DECLINE) or counted in
 * swarmboot_dhcp_dropped_total, and no packet hits the internal-error path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePacket, DhcpDecodeError, MAGIC_COOKIE } from '../../server/dhcp/codec.ts';
import { Opt } from '../../server/dhcp/options.ts';
import { clientBuf, MsgType } from './packets.ts';
import { harness, type Harness } from './harness.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);

function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = int(256); return b; };
  return { int, bytes, pick: <T>(xs: T[]): T => xs[int(xs.length)]! };
}

type Gen = ReturnType<typeof rng>;

function validSeed(r: Gen): Buffer {
  const mac = `52:54:00:${[0, 0, 0].map(() => r.int(256).toString(16).padStart(2, '0')).join(':')}`;
  const type = r.pick([MsgType.DISCOVER, MsgType.REQUEST, MsgType.DECLINE, MsgType.RELEASE, MsgType.INFORM]);
  return clientBuf({
    type, mac, arch: r.pick([0, 6, 7, 9, 10, 11, 15, 16, 19, 0x1234]), uuid: r.int(2) ? '00112233-4455-6677-8899-aabbccddeeff' : undefined,
    ipxe: r.int(4) === 0, giaddr: r.int(5) === 0 ? '10.77.0.1' : undefined, ciaddr: r.int(4) === 0 ? '10.66.0.101' : undefined,
    requestedIp: r.int(2) ? `10.66.0.${r.int(256)}` : undefined, serverId: r.int(2) ? r.pick(['10.66.0.1', '10.66.0.9']) : undefined,
    bootItem: r.int(3) === 0 ? [r.pick([0, 0x8000, 0x8001, 0x8002, r.int(65536)]), r.int(2)] : undefined,
  });
}

/** Mutations that keep the packet plausible enough to reach deep code paths. */
function mutate(r: Gen, b: Buffer): Buffer {
  const m = r.int(10);
  switch (m) {
    case 0: { const n = 1 + r.int(8); for (let i = 0; i < n; i++) b[r.int(b.length)] = r.int(256); return b; } // byte flips
    case 1: { // lie about an option length
      let i = 240; const stops: number[] = [];
      while (i < b.length && b[i] !== 255) { stops.push(i); i += b[i] === 0 ? 1 : 2 + (b[i + 1] ?? 0); }
      const at = stops.length ? r.pick(stops) : 240; if (at + 1 < b.length) b[at + 1] = r.int(256); return b;
    }
    case 2: { // overload with garbage in file/sname
      const ov = Buffer.from([52, 1, r.pick([1, 2, 3, 0, 4, 255])]);
      const out = Buffer.concat([b.subarray(0, 240), ov, b.subarray(240)]);
      r.bytes(r.int(128)).copy(out, 108); r.bytes(r.int(64)).copy(out, 44);
      if (r.int(2)) out[108 + r.int(128)] = 255;
      return out;
    }
    case 3: { // huge option 55 (several 255-byte instances, concatenated per RFC 3396)
      const parts = [b.subarray(0, 240)];
      for (let k = 0; k < 1 + r.int(6); k++) parts.push(Buffer.from([55, 255]), r.bytes(255));
      parts.push(b.subarray(240));
      return Buffer.concat(parts);
    }
    case 4: { // option 43 garbage (and a fake boot item)
      const g = r.bytes(r.int(256));
      if (r.int(2) && g.length > 6) { g[0] = 71; g[1] = r.int(10); }
      return Buffer.concat([b.subarray(0, 240), Buffer.from([43, g.length]), g, b.subarray(240)]);
    }
    case 5: return b.subarray(0, r.int(b.length)); // truncation anywhere
    case 6: { b.writeUInt32BE(r.int(0x100000000), 236); return b; } // broken cookie
    case 7: { b[2] = r.int(256); b[1] = r.int(4); b[0] = r.int(4); return b; } // hlen/htype/op
    case 8: { // odd-length or empty 93/97/60/53/50/54/77/175
      const code = r.pick([Opt.CLIENT_ARCH, Opt.CLIENT_UUID, Opt.VENDOR_CLASS, Opt.MESSAGE_TYPE, Opt.REQUESTED_IP, Opt.SERVER_ID, Opt.USER_CLASS, Opt.IPXE_ENCAP]);
      const v = r.bytes(r.int(20));
      if (code === Opt.VENDOR_CLASS && r.int(2)) Buffer.from('PXEClient').copy(v);
      return Buffer.concat([b.subarray(0, 240), Buffer.from([code, v.length]), v, b.subarray(240)]);
    }
    default: return Buffer.concat([b, r.bytes(r.int(300))]); // junk after the end
  }
}

/** Mutations that must always be refused. */
function broken(r: Gen, b: Buffer): Buffer {
  switch (r.int(4)) {
    case 0: return b.subarray(0, r.int(240)); // shorter than the header
    case 1: { const c = Buffer.from(b); c.writeUInt32BE((MAGIC_COOKIE + 1 + r.int(1000)) >>> 0, 236); return c; } // no cookie
    case 2: return Buffer.concat([b.subarray(0, 240), Buffer.from([53, 1, 1, r.pick([55, 60, 43, 97]), 200]), r.bytes(r.int(199))]); // length past the end
    default: { const c = Buffer.from(b.subarray(0, 240)); c[2] = 17 + r.int(239); return Buffer.concat([c, Buffer.from([53, 1, 1, 255])]); } // hlen > 16
  }
}

function run(t: Harness, inputs: Buffer[]) {
  const tally = { replied: 0, dropped: 0, handled: 0 };
  for (const buf of inputs) {
    t.clock.now += 50; // offers expire, so the pool keeps turning over
    const res = t.h.handle(buf, { address: '0.0.0.0', port: 68 }, buf.length % 7 === 0 ? 'pxe' : 'dhcp');
    tally[res.result]++;
    for (const o of res.out) decodePacket(o.buf); // every reply we build is itself a valid packet
  }
  return tally;
}

function droppedTotal(t: Harness): { total: number; internal: number } {
  const text = t.metrics.render();
  let total = 0;
  for (const m of text.matchAll(/^swarmboot_dhcp_dropped_total\{reason="[^"]+"\} (\d+)$/gm)) total += Number(m[1]);
  return { total, internal: t.metrics.counter('swarmboot_dhcp_dropped_total', '').get({ reason: 'internal' }) };
}

test('codec: 30,000 random buffers either decode or throw DhcpDecodeError', () => {
  const r = rng(SEED);
  for (let i = 0; i < 30_000; i++) {
    const b = r.int(3) === 0 ? r.bytes(r.int(600)) : mutate(r, validSeed(r));
    if (i % 2 && b.length >= 240) b.writeUInt32BE(MAGIC_COOKIE, 236); // get past the cookie half the time
    try { decodePacket(b); } catch (e) { assert.ok(e instanceof DhcpDecodeError, `${e}`); }
  }
});

for (const mode of ['proxy', 'full'] as const) {
  test(`${mode} responder: 40,000 mutated packets, all accounted for, none crash`, { timeout: 120_000 }, () => {
    const r = rng(SEED + (mode === 'full' ? 1 : 0));
    const t = harness({
      mode, rateLimit: { burst: 1e9, perSecond: 1e9 },
      pxeMenu: { prompt: 'F8', timeoutSeconds: 3, items: [{ label: 'Local', boot: 'local' }, { label: 'Deploy', boot: 'swarmboot' }, { label: 'Tool', bootfile: { bios: 't.0' } }] },
      pools: [{ subnet: '10.66.0.0/24', rangeStart: '10.66.0.10', rangeEnd: '10.66.0.250' }, { subnet: '10.77.0.0/24', rangeStart: '10.77.0.10', rangeEnd: '10.77.0.20' }],
    });
    const inputs: Buffer[] = [];
    for (let i = 0; i < 40_000; i++) {
      const k = r.int(10);
      inputs.push(k === 0 ? r.bytes(r.int(700)) : k === 1 ? validSeed(r) : mutate(r, validSeed(r)));
    }
    const tally = run(t, inputs);
    const d = droppedTotal(t);
    assert.equal(tally.replied + tally.dropped + tally.handled, inputs.length);
    assert.equal(d.total, tally.dropped, 'every unanswered packet is counted in dropped_total');
    assert.equal(d.internal, 0, 'no packet reached the internal-error path');
    assert.ok(tally.replied > 1000, `some mutants still get answers (${tally.replied})`);
    if (process.env.FUZZ_VERBOSE) console.log(mode, tally, t.metrics.render().split("\n").filter((l) => l.startsWith("swarmboot_dhcp_dropped")).join("\n"));
  });
}

test('responder: 20,000 broken packets (truncated, no cookie, wrong lengths, bad hlen) are all dropped', () => {
  const r = rng(SEED + 2);
  const t = harness({ mode: 'proxy' });
  const inputs = Array.from({ length: 20_000 }, () => broken(r, validSeed(r)));
  const tally = run(t, inputs);
  assert.deepEqual(tally, { replied: 0, dropped: 20_000, handled: 0 });
  const d = droppedTotal(t);
  assert.equal(d.total, 20_000);
  assert.equal(t.metrics.counter('swarmboot_dhcp_packets_total', '').get({ type: 'malformed' }), 20_000);
});
