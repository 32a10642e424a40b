import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { compileModel, matchModel, normaliseModel } from '../../content/models.ts';
import { lineRenderer, barRenderer, fmtBytes } from '../../content/progress.ts';
import type { ScanProgress } from '../../content/types.ts';
import { parseXml, XmlError } from '../../content/xml.ts';
import { parseWimXml, selectImage, WimError } from '../../content/wim.ts';
import { etagForStamp, ifRangeMatches, noneMatch, notModifiedSince, parseRange, reprDigest } from '../../server/http/content-headers.ts';
import { TurnGate } from '../../server/http/content-turns.ts';
import { archiveFormat } from '../../content/package.ts';
import { BandwidthLimiter, TokenBucket, normaliseAddress } from '../../server/http/content-limit.ts';
import { contentUrl, parseContentTarget } from '../../server/http/content-path.ts';

test('parseRange: single, open, suffix, clamped, unsatisfiable, ignored', () => {
  assert.deepEqual(parseRange(undefined, 100), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=0-9', 100), { kind: 'range', start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=90-', 100), { kind: 'range', start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-10', 100), { kind: 'range', start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-1000', 100), { kind: 'range', start: 0, end: 99 });
  assert.deepEqual(parseRange('bytes=50-1000', 100), { kind: 'range', start: 50, end: 99 });
  assert.deepEqual(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=0-0', 0), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=-5', 0), { kind: 'unsatisfiable' });
  // Merged when touching; disjoint ranges fall back to the whole file.
  assert.deepEqual(parseRange('bytes=0-9, 10-19', 100), { kind: 'range', start: 0, end: 19 });
  assert.deepEqual(parseRange('bytes=0-9,200-300', 100), { kind: 'range', start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=0-9,20-29', 100), { kind: 'none' });
  for (const bad of ['items=0-1', 'bytes=5-1', 'bytes=x-1', 'bytes=-', 'bytes=', 'bytes=1-2-3', 'bytes=99999999999999999999-']) {
    assert.deepEqual(parseRange(bad, 100), { kind: 'none' }, bad);
  }
});

test('conditionals: If-None-Match weak compare, If-Range strong, dates', () => {
  const etag = '"sha256-ab"';
  assert.ok(noneMatch('"sha256-ab"', etag));
  assert.ok(noneMatch('W/"sha256-ab"', etag));
  assert.ok(noneMatch('"x", "sha256-ab"', etag));
  assert.ok(noneMatch('*', etag));
  assert.ok(!noneMatch('"sha256-cd"', etag));
  const lm = new Date(1_700_000_000_000).toUTCString();
  assert.ok(ifRangeMatches('"sha256-ab"', etag, lm));
  assert.ok(!ifRangeMatches('W/"sha256-ab"', etag, lm));
  assert.ok(!ifRangeMatches('"other"', etag, lm));
  assert.ok(ifRangeMatches(lm, etag, lm));
  assert.ok(!ifRangeMatches(new Date(1_700_000_001_000).toUTCString(), etag, lm));
  assert.ok(notModifiedSince(lm, 1_700_000_000_500));
  assert.ok(!notModifiedSince(lm, 1_700_000_001_000));
  assert.equal(reprDigest('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'), 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
});

test('parseContentTarget refuses traversal and oddities, keeps plain paths', () => {
  assert.deepEqual(parseContentTarget('win11/install.wim'), { ok: true, packageId: 'win11', path: 'install.wim' });
  assert.deepEqual(parseContentTarget('drv/a%20b/c.inf?x=1'), { ok: true, packageId: 'drv', path: 'a b/c.inf' });
  assert.deepEqual(parseContentTarget('drv/'), { ok: true, packageId: 'drv', path: '' });
  const refused: Array<[string, number]> = [
    ['drv/../etc/passwd', 400],
    ['drv/a/../../x', 400],
    ['drv/%2e%2e/x', 400],
    ['drv/%2E%2E/x', 400],
    ['drv/./x', 400],
    ['drv/a%2fb', 400],
    ['drv/a%5cb', 400],
    ['drv/..%5c..%5cwindows', 400],
    ['drv/a\\b', 400],
    ['drv/a%00b', 400],
    ['drv//etc/passwd', 400],
    ['drv/%zz', 400],
    ['..', 404],
    ['%2e%2e/x', 404],
    ['bad id/x', 404],
  ];
  for (const [t, status] of refused) {
    const r = parseContentTarget(t);
    assert.equal(r.ok, false, t);
    if (!r.ok) assert.equal(r.status, status, t);
  }
  assert.equal(contentUrl('drv', 'a b/c#.inf'), '/content/drv/a%20b/c%23.inf');
});

test('model matching: normalisation, exact before prefix, longest prefix, several SMBIOS strings', () => {
  assert.equal(normaliseModel('  ThinkPad\tT480 \u00a0 '), 'thinkpad t480');
  const pats = ['ThinkPad T480', '20L5*', '20L*', 'OptiPlex 7090'].map(compileModel);
  assert.equal(matchModel(pats, 'thinkpad  t480')?.pattern.source, 'ThinkPad T480');
  assert.equal(matchModel(pats, 'ThinkPad T480s'), undefined);
  assert.equal(matchModel(pats, '20L5S0AA00')?.pattern.source, '20L5*');
  assert.equal(matchModel(pats, '20LXS0AA00')?.pattern.source, '20L*');
  const both = matchModel(pats, ['20L5S0AA00', 'ThinkPad T480']);
  assert.equal(both?.pattern.source, 'ThinkPad T480');
  assert.equal(both?.exact, true);
  assert.equal(matchModel([compileModel('*')], 'anything')?.exact, false);
  assert.equal(matchModel(pats, ['', '   ']), undefined);
});

test('WIM XML: images, edition, flags, arch, version, languages; errors', () => {
  const xml = `<WIM><TOTALBYTES>1</TOTALBYTES>
    <IMAGE INDEX="2"><NAME>Windows 11 Pro</NAME><FLAGS>Professional</FLAGS><TOTALBYTES>200</TOTALBYTES>
      <WINDOWS><ARCH>9</ARCH><EDITIONID>Professional</EDITIONID><LANGUAGES><LANGUAGE>en-US</LANGUAGE><LANGUAGE>de-DE</LANGUAGE></LANGUAGES>
      <VERSION><MAJOR>10</MAJOR><MINOR>0</MINOR><BUILD>22631</BUILD><SPBUILD>2861</SPBUILD></VERSION></WINDOWS>
      <CREATIONTIME><HIGHPART>0x01DA5C3B</HIGHPART><LOWPART>0x1A2B3C4D</LOWPART></CREATIONTIME></IMAGE>
    <IMAGE INDEX="1"><NAME>Windows 11 Home</NAME><DESCRIPTION>a &amp; b</DESCRIPTION><TOTALBYTES>100</TOTALBYTES></IMAGE></WIM>`;
  const images = parseWimXml(xml);
  assert.deepEqual(images.map((i) => [i.index, i.name, i.totalBytes]), [[1, 'Windows 11 Home', 100], [2, 'Windows 11 Pro', 200]]);
  assert.equal(images[0]!.description, 'a & b');
  assert.equal(images[1]!.edition, 'Professional');
  assert.equal(images[1]!.flags, 'Professional');
  assert.equal(images[1]!.arch, 'x64');
  assert.equal(images[1]!.windowsVersion, '10.0.22631.2861');
  assert.deepEqual(images[1]!.languages, ['en-US', 'de-DE']);
  assert.match(images[1]!.created ?? '', /^20\d\d-/);
  assert.equal(selectImage(images, 2).name, 'Windows 11 Pro');
  assert.equal(selectImage(images, 'windows 11  PRO').index, 2);
  assert.equal(selectImage(images, '1').index, 1);
  assert.throws(() => selectImage(images, 3), /no image with index 3; it has 1 "Windows 11 Home", 2 "Windows 11 Pro"/);
  assert.throws(() => selectImage(images, 'Enterprise'), /no image named "Enterprise"/);
  assert.throws(() => parseWimXml('<WIM><IMAGE INDEX="1"><NAME>x</NAME></WIM>'), WimError);
  assert.throws(() => parseWimXml('<FOO/>'), /expected <WIM>/);
  assert.throws(() => parseXml('<!DOCTYPE x [<!ENTITY a "b">]><x/>'), XmlError);
  const dup = parseWimXml('<WIM><IMAGE INDEX="1"><NAME>A</NAME></IMAGE><IMAGE INDEX="2"><NAME>A</NAME></IMAGE></WIM>');
  assert.throws(() => selectImage(dup, 'A'), /2 images named "A" \(indexes 1, 2\)/);
});

test('token bucket paces to its rate; limiter picks client and most specific subnet', () => {
  let now = 0;
  const b = new TokenBucket(1_000_000, () => now);
  assert.equal(b.take(250_000), 0); // burst
  assert.equal(b.take(500_000), 500); // 0.5 MB of debt at 1 MB/s
  now = 500;
  assert.equal(b.take(0), 0);
  const l = new BandwidthLimiter({ perClientBytesPerSec: 5e6, subnets: [{ cidr: '10.0.0.0/8', bytesPerSec: 1e6 }, { cidr: '10.1.0.0/16', bytesPerSec: 2e6 }] });
  assert.deepEqual(l.bucketsFor('::ffff:10.1.2.3').buckets.map((x) => x.rate), [5e6, 2e6]);
  assert.equal(l.bucketsFor('10.9.0.1').rate, 1e6);
  assert.equal(l.bucketsFor('192.168.0.1').rate, 5e6);
  assert.equal(new BandwidthLimiter({}).bucketsFor('1.2.3.4').buckets.length, 0);
  assert.throws(() => new BandwidthLimiter({ subnets: [{ cidr: '10.0.0.0', bytesPerSec: 1 }] }), /not a CIDR/);
  assert.equal(normaliseAddress('::ffff:127.0.0.1'), '127.0.0.1');
});

test('progress renderers: bar redraws in place, lines are throttled and end with a summary', () => {
  let out = '';
  const stream = Object.assign(new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }), { columns: 120 });
  let now = 0;
  const ev = (done: number, finished = false): ScanProgress => ({
    packageId: 'win11', file: 'install.wim', fileBytesDone: done, fileBytesTotal: 4 * 2 ** 30,
    bytesDone: done, bytesTotal: 4 * 2 ** 30, filesDone: finished ? 1 : 0, filesTotal: 1, finished,
  });
  const bar = barRenderer({ stream, now: () => now });
  for (let i = 0; i <= 10; i++) {
    now = i * 30;
    bar.onProgress(ev(i * (400 << 20)));
  }
  now = 400;
  bar.onProgress(ev(4 * 2 ** 30, true));
  bar.finish();
  const draws = out.split('\r').length - 1;
  assert.ok(draws >= 3 && draws <= 6, `bar drawn ${draws} times`);
  assert.match(out, /hashing \[#+-*\] +\d+% .*win11: install\.wim/);
  assert.ok(out.endsWith('\n'));

  out = '';
  now = 0;
  const lines = lineRenderer({ stream, now: () => now, intervalMs: 5000 });
  for (let i = 0; i <= 100; i++) {
    now = i * 100;
    lines.onProgress(ev(i * (40 << 20)));
  }
  lines.onProgress(ev(4 * 2 ** 30, true));
  lines.finish();
  const l = out.trim().split('\n');
  assert.ok(l.length >= 3 && l.length <= 5, `${l.length} lines`);
  assert.match(l[0]!, /^content: hashing 0% .* file 1\/1 win11\/install\.wim$/);
  assert.match(l[l.length - 1]!, /^content: hashed 1 file\(s\), 4\.00 GiB in /);
  assert.equal(fmtBytes(1536), '1.50 KiB');
});

test('TurnGate: at most perTurn waiters go on per event-loop turn, first come first served, never in the caller\'s turn', async () => {
  const gate = new TurnGate(3);
  const order: number[] = [];
  const turnOf: number[] = [];
  let turn = 0;
  // A turn counter driven by setImmediate, the same phase the gate uses.
  let ticking = true;
  const tick = (): void => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const all = Array.from({ length: 10 }, (_, i) =>
    gate.wait().then(() => {
      order.push(i);
      turnOf.push(turn);
    }),
  );
  assert.deepEqual(order, [], 'nothing runs synchronously');
  await Promise.resolve();
  assert.deepEqual(order, [], 'nor in the same turn');
  await Promise.all(all);
  ticking = false;
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const perTurn = new Map<number, number>();
  for (const t of turnOf) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
  assert.deepEqual([...perTurn.values()], [3, 3, 3, 1], `waiters released per turn: ${JSON.stringify([...perTurn])}`);
  assert.equal(new Set(turnOf).size, 4, 'four distinct turns');
  // A waiter that arrives later joins the queue's end; the gate keeps working after going idle.
  const late: string[] = [];
  await Promise.all([gate.wait().then(() => late.push('a')), gate.wait().then(() => late.push('b'))]);
  assert.deepEqual(late, ['a', 'b']);
});

test('stamp ETags change with ctime (an in-place rewrite with the old mtime put back)', () => {
  const a = etagForStamp(100, 1_700_000_000_000_000_000n, 42n, 1_700_000_001_000_000_000n);
  const b = etagForStamp(100, 1_700_000_000_000_000_000n, 42n, 1_700_000_002_000_000_000n);
  assert.notEqual(a, b);
  assert.match(a, /^"m-[0-9a-f-]+"$/);
  assert.equal(ifRangeMatches(a, b, 'x'), false);
});

test('drivers archive formats by magic bytes', () => {
  assert.equal(archiveFormat(Buffer.from('504b0304140000000800', 'hex')), 'zip');
  assert.equal(archiveFormat(Buffer.from('504b0506', 'hex')), 'zip');
  assert.equal(archiveFormat(Buffer.from('4d5343460000000012', 'hex')), 'cab');
  assert.match((archiveFormat(Buffer.from('4d53434601000000', 'hex')) as { problem: string }).problem, /not a zip or cab/);
  assert.match((archiveFormat(Buffer.from('377abcaf271c', 'hex')) as { problem: string }).problem, /7z/);
  assert.match((archiveFormat(Buffer.from('1f8b0800', 'hex')) as { problem: string }).problem, /gzip/);
  assert.match((archiveFormat(Buffer.alloc(0)) as { problem: string }).problem, /empty/);
});
