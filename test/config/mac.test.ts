import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeMac, normalizeMacPrefix, normalizeUuid } from '../../config/mac.ts';
import { loadConfigText } from '../../config/load.ts';

test('every MAC spelling admins and switches use becomes aa:bb:cc:dd:ee:ff', () => {
  for (const s of ['52:54:00:AB:cd:01', '52-54-00-ab-CD-01', '525400abcd01', '5254.00ab.cd01', ' 52:54:00:ab:cd:01 ']) {
    assert.equal(normalizeMac(s), '52:54:00:ab:cd:01', s);
  }
  for (const bad of ['', '52:54:00:ab:cd', '52:54:00:ab:cd:01:02', '52:54:00:ab:cd:0g', 'not a mac']) assert.equal(normalizeMac(bad), null, bad);
});

test('MAC prefixes and UUIDs are normalised; malformed ones are refused', () => {
  assert.equal(normalizeMacPrefix('52-54-00'), '52:54:00');
  assert.equal(normalizeMacPrefix('5254'), '52:54');
  assert.equal(normalizeMacPrefix('525'), null);
  assert.equal(normalizeUuid('4C4C4544-0042-3510-8052-B4C04F4E4D32'), '4c4c4544-0042-3510-8052-b4c04f4e4d32');
  assert.equal(normalizeUuid('4c4c454400423510 8052b4c04f4e4d32'), null);
});

test('the config accepts the same MAC spellings as the API, Cisco dotted form included', () => {
  const cfg = loadConfigText('/cfg/x.yaml', 'machines:\n  hosts:\n    - { mac: 5254.00ab.cd01, action: local }\n    - { mac: "525400abcd02", action: local }\n');
  assert.ok(cfg.index.byMac.has('52:54:00:ab:cd:01'));
  assert.ok(cfg.index.byMac.has('52:54:00:ab:cd:02'));
});
