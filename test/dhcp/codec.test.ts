import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePacket, DhcpDecodeError, encodePacket, MAGIC_COOKIE } from '../../server/dhcp/codec.ts';
import { Opt } from '../../server/dhcp/options.ts';
import { clientPacket, MsgType } from './packets.ts';

/** A raw request laid out by hand, the way a PXE ROM does, with options in `opts` bytes. */
function raw(opts: number[], patch?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(240 + opts.length);
  b[0] = 1; b[1] = 1; b[2] = 6;
  b.writeUInt32BE(0xdeadbeef, 4);
  Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]).copy(b, 28);
  b.writeUInt32BE(MAGIC_COOKIE, 236);
  Buffer.from(opts).copy(b, 240);
  patch?.(b);
  return b;
}

const reason = (fn: () => unknown) => {
  try { fn(); } catch (e) { assert.ok(e instanceof DhcpDecodeError, String(e)); return e.reason; }
  assert.fail('decoded');
};

test('round trip keeps every field and option', () => {
  const p = clientPacket({ type: MsgType.DISCOVER, mac: '52:54:00:12:34:56', xid: 0x01020304, arch: 7, uuid: '00112233-4455-6677-8899-aabbccddeeff', giaddr: '10.1.2.3' });
  const buf = encodePacket(p);
  const d = decodePacket(buf);
  assert.equal(d.xid, 0x01020304);
  assert.equal(d.giaddr, '10.1.2.3');
  assert.equal(d.chaddr.toString('hex'), '525400123456');
  assert.deepEqual([...d.options.keys()], [...p.options.keys()]);
  for (const [k, v] of p.options) assert.deepEqual(d.options.get(k), v, `option ${k}`);
});

test('replies are padded to the 300-byte BOOTP minimum and end with option 255', () => {
  const p = clientPacket({ type: MsgType.DISCOVER, mac: '52:54:00:12:34:56' });
  p.options = new Map([[Opt.MESSAGE_TYPE, Buffer.from([2])]]);
  const buf = encodePacket(p);
  assert.equal(buf.length, 300);
  assert.equal(buf[243], 255);
  assert.ok(buf.subarray(244).every((x) => x === 0));
});

test('pad bytes between options are skipped, not taken as options', () => {
  const d = decodePacket(raw([0, 0, 53, 1, 1, 0, 60, 9, ...Buffer.from('PXEClient'), 0, 0, 0, 93, 2, 0, 7, 255]));
  assert.equal(d.options.get(53)![0], 1);
  assert.equal(d.options.get(60)!.toString(), 'PXEClient');
  assert.equal(d.options.get(93)!.readUInt16BE(0), 7);
  assert.equal(d.options.size, 3);
});

test('a missing end option is tolerated when the last option fits exactly', () => {
  const d = decodePacket(raw([53, 1, 3, 50, 4, 10, 0, 0, 5]));
  assert.equal(d.options.get(50)!.join('.'), '10.0.0.5');
});

test('trailing padding after the end option is ignored', () => {
  const d = decodePacket(raw([53, 1, 1, 255, 7, 200, 1, 2, 3]));
  assert.equal(d.options.size, 1);
});

test('repeated options are concatenated (RFC 3396), long values split on encode', () => {
  const d = decodePacket(raw([53, 1, 1, 43, 2, 6, 1, 43, 1, 8, 255]));
  assert.deepEqual([...d.options.get(43)!], [6, 1, 8]);
  const p = clientPacket({ type: MsgType.DISCOVER, mac: '52:54:00:12:34:56' });
  const long = Buffer.alloc(600, 7);
  p.options.set(Opt.BOOTFILE, long);
  const back = decodePacket(encodePacket(p));
  assert.deepEqual(back.options.get(Opt.BOOTFILE), long);
});

test('option overload: options in file and sname are read, and the fields are empty', () => {
  const b = raw([53, 1, 1, 52, 1, 3, 255]);
  Buffer.from([60, 9, ...Buffer.from('PXEClient'), 255]).copy(b, 108); // file
  Buffer.from([93, 2, 0, 11, 0, 97, 17, 0, ...Array(16).fill(0xab), 255]).copy(b, 44); // sname
  const d = decodePacket(b);
  assert.equal(d.file, '');
  assert.equal(d.sname, '');
  assert.equal(d.options.get(60)!.toString(), 'PXEClient');
  assert.equal(d.options.get(93)!.readUInt16BE(0), 11);
  assert.equal(d.options.get(97)!.length, 17);
  assert.equal(d.options.has(52), false);
});

test('without overload, file and sname are NUL-terminated strings', () => {
  const b = raw([53, 1, 1, 255]);
  b.write('pxelinux.0', 108, 'latin1');
  b.write('bootsrv', 44, 'latin1');
  const d = decodePacket(b);
  assert.equal(d.file, 'pxelinux.0');
  assert.equal(d.sname, 'bootsrv');
});

test('a full 128-byte file field without NUL stays inside the field', () => {
  const b = raw([53, 1, 1, 255]);
  b.fill(0x41, 108, 236);
  assert.equal(decodePacket(b).file.length, 128);
});

test('malformed packets are refused with a reason', () => {
  assert.equal(reason(() => decodePacket(Buffer.alloc(239))), 'truncated');
  assert.equal(reason(() => decodePacket(raw([53, 1, 1], (b) => b.writeUInt32BE(0, 236)))), 'no_cookie');
  assert.equal(reason(() => decodePacket(raw([53, 1, 1], (b) => { b[2] = 17; }))), 'bad_hlen');
  assert.equal(reason(() => decodePacket(raw([53, 1, 1, 60, 20, 1, 2]))), 'option_overrun');
  assert.equal(reason(() => decodePacket(raw([53, 1, 1, 60]))), 'option_overrun');
  assert.equal(reason(() => decodePacket(raw([53, 1, 1, 52, 1, 9, 255]))), 'bad_overload');
  assert.equal(reason(() => decodePacket(raw([53, 1, 1, 52, 2, 1, 1, 255]))), 'bad_overload');
  assert.equal(reason(() => decodePacket(Buffer.alloc(5000))), 'too_large');
  // An overloaded file field whose option runs past the field is caught too.
  assert.equal(reason(() => decodePacket(raw([53, 1, 1, 52, 1, 1, 255], (b) => { b[234] = 60; b[235] = 50; }))), 'option_overrun');
});

test('encode refuses what it cannot represent instead of truncating it', () => {
  const p = clientPacket({ type: MsgType.OFFER, mac: '52:54:00:12:34:56' });
  assert.throws(() => encodePacket({ ...p, file: 'x'.repeat(128) }), /file longer/);
  assert.throws(() => encodePacket({ ...p, siaddr: '300.1.1.1' }), /not an IPv4/);
  assert.throws(() => encodePacket({ ...p, options: new Map([[255, Buffer.alloc(1)]]) }), /cannot encode/);
});
