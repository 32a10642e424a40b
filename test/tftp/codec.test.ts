import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decode,
  decodeAckBlock,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodeRequest,
  OP_ACK,
  OP_DATA,
  OP_ERROR,
  OP_OACK,
  OP_RRQ,
  OP_WRQ,
  parseOptionInt,
} from '../../server/tftp/codec.ts';
import { negotiate, toNetascii } from '../../server/tftp/negotiate.ts';

const limits = { maxBlksize: 1456, maxWindowsize: 64 };

test('RRQ round-trips with options; names are lower-cased, first duplicate wins', () => {
  const buf = encodeRequest(OP_RRQ, '\\Boot\\BCD', 'OCTET', [
    ['BlkSize', '1456'],
    ['tsize', '0'],
    ['blksize', '512'],
  ]);
  const p = decode(buf);
  assert.ok(p && p.op === OP_RRQ);
  assert.equal(p.filename, '\\Boot\\BCD');
  assert.equal(p.mode, 'octet');
  assert.deepEqual([...p.options], [
    ['blksize', '1456'],
    ['tsize', '0'],
  ]);
  const w = decode(encodeRequest(OP_WRQ, 'x', 'octet'));
  assert.equal(w?.op, OP_WRQ);
});

test('malformed packets decode to null, never throw', () => {
  const bad = [
    Buffer.alloc(0),
    Buffer.from([0]),
    Buffer.from([0, 1]), // RRQ without filename
    Buffer.from([0, 1, 0x61]), // no NUL
    Buffer.from([0, 1, 0x61, 0]), // no mode
    Buffer.from([0, 1, 0x61, 0, 0]), // empty mode
    Buffer.from([0, 3, 0]), // short DATA
    Buffer.from([0, 4, 0]), // short ACK
    Buffer.from([0, 4, 0, 1, 2, 3]), // ACK too long
    Buffer.from([0, 9, 0, 1]), // unknown opcode
    Buffer.from([0xff, 0xff]),
    Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(2000, 0x61), Buffer.from([0])]),
  ];
  for (const b of bad) assert.equal(decode(b), null, b.toString('hex'));
});

test('trailing garbage after options is tolerated (PXE ROM padding)', () => {
  const base = encodeRequest(OP_RRQ, 'pxelinux.0', 'octet', [['tsize', '0']]);
  const p = decode(Buffer.concat([base, Buffer.from([0, 0, 0])]));
  assert.ok(p && p.op === OP_RRQ);
  assert.equal(p.options.get('tsize'), '0');
  const q = decode(Buffer.concat([base, Buffer.from('blksize')]));
  assert.ok(q && q.op === OP_RRQ);
  assert.equal(q.options.has('blksize'), false);
});

test('DATA, ACK (with and without the Microsoft window byte), ERROR, OACK', () => {
  const d = decode(encodeData(65535, Buffer.from('abc')));
  assert.ok(d && d.op === OP_DATA);
  assert.equal(d.block, 65535);
  assert.equal(d.data.toString(), 'abc');
  assert.equal(decode(encodeData(65536, Buffer.alloc(0)))?.op, OP_DATA);
  assert.deepEqual(decode(encodeAck(7)), { op: OP_ACK, block: 7 });
  assert.deepEqual(decode(encodeAck(7, 32)), { op: OP_ACK, block: 7, nextWindow: 32 });
  assert.equal(decodeAckBlock(encodeAck(0x1234)), 0x1234);
  assert.equal(decodeAckBlock(encodeAck(1, 4)), 1);
  assert.equal(decodeAckBlock(Buffer.from([0, 3, 0, 1])), -1);
  const e = decode(encodeError(8, 'no thanks\u00e9'));
  assert.deepEqual(e, { op: OP_ERROR, code: 8, message: 'no thanks?' });
  // An ERROR without its NUL still decodes.
  assert.deepEqual(decode(Buffer.from([0, 5, 0, 1, 0x78])), { op: OP_ERROR, code: 1, message: 'x' });
  const o = decode(encodeOack([['blksize', '1456'], ['msftwindow', '27182']]));
  assert.ok(o && o.op === OP_OACK);
  assert.equal(o.options.get('msftwindow'), '27182');
});

test('option integers are strict decimals', () => {
  assert.equal(parseOptionInt('1456'), 1456);
  assert.ok(Number.isNaN(parseOptionInt('')));
  assert.ok(Number.isNaN(parseOptionInt('-1')));
  assert.ok(Number.isNaN(parseOptionInt('1e3')));
  assert.ok(Number.isNaN(parseOptionInt(' 12')));
  assert.ok(Number.isNaN(parseOptionInt('0x10')));
  assert.ok(Number.isNaN(parseOptionInt('99999999999')));
});

test('blksize: 0 and 7 ignored (RFC 2348 range is 8..65464), 65465 and anything large clamped to the maximum', () => {
  for (const v of ['0', '7', 'abc', '']) {
    const n = negotiate(new Map([['blksize', v]]), 100, limits);
    assert.equal(n.blksize, 512, v);
    assert.deepEqual(n.oack, [], v);
  }
  assert.equal(negotiate(new Map([['blksize', '8']]), 100, limits).blksize, 8);
  for (const v of ['65464', '65465', '100000']) {
    const n = negotiate(new Map([['blksize', v]]), 100, limits);
    assert.equal(n.blksize, 1456, v);
    assert.deepEqual(n.oack, [['blksize', '1456']]);
  }
  assert.equal(negotiate(new Map([['blksize', '1024']]), 100, limits).blksize, 1024);
});

test('windowsize: 0 and 65536 ignored (RFC 7440 range is 1..65535), large values clamped', () => {
  for (const v of ['0', '65536', 'x']) {
    const n = negotiate(new Map([['windowsize', v]]), 100, limits);
    assert.equal(n.windowsize, 1, v);
    assert.deepEqual(n.oack, []);
  }
  assert.deepEqual(negotiate(new Map([['windowsize', '65535']]), 100, limits).oack, [['windowsize', '64']]);
  assert.equal(negotiate(new Map([['windowsize', '16']]), 100, limits).windowsize, 16);
});

test('tsize answers the real size; timeout 1..255; msftwindow only for the magic value; unknown options ignored', () => {
  const n = negotiate(
    new Map([
      ['tsize', '0'],
      ['timeout', '3'],
      ['msftwindow', '31416'],
      ['multicast', ''],
      ['x-vendor', '1'],
    ]),
    123456,
    limits,
  );
  assert.deepEqual(n.oack, [
    ['tsize', '123456'],
    ['timeout', '3'],
    ['msftwindow', '27182'],
  ]);
  assert.equal(n.timeoutMs, 3000);
  assert.equal(n.msftwindow, true);
  assert.equal(n.tsizeRequested, true);
  assert.deepEqual(n.ignored, ['multicast', 'x-vendor']);
  assert.equal(negotiate(new Map([['msftwindow', '1']]), 1, limits).msftwindow, false);
  assert.deepEqual(negotiate(new Map([['timeout', '0']]), 1, limits).oack, []);
  assert.deepEqual(negotiate(new Map([['timeout', '256']]), 1, limits).oack, []);
});

test('netascii conversion: LF → CR LF, CR → CR NUL', () => {
  assert.deepEqual(toNetascii(Buffer.from('a\nb\rc')), Buffer.from('a\r\nb\r\0c', 'latin1'));
  const plain = Buffer.from('no line ends');
  assert.equal(toNetascii(plain), plain);
});
