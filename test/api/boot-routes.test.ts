import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir, writeFiles, daemonFor, serverSection, ADMIN_TOKEN } from '../helpers.ts';

test('the per-machine iPXE script follows the deployment: booting on handout, local after done', async () => {
  const { dir, cleanup } = tempDir('sbt-boot-');
  writeFiles(dir, {
    'swarmboot.yaml': `${serverSection()}
boot:
  profiles:
    pe: { type: winpe, dir: winpe }
sequences:
  win: { profile: pe, steps: [{ type: command, run: x }] }
machines:
  default: { action: local }
  hosts:
    - { mac: "52:54:00:00:00:01", sequence: win, hostname: pc1 }
`,
  });
  const d = await daemonFor(join(dir, 'swarmboot.yaml'));
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  try {
    const s = await fetch(`${d.url}/boot/52-54-00-00-00-01.ipxe`);
    assert.equal(s.status, 200);
    const text = await s.text();
    assert.match(text, /^#!ipxe\n# swarmboot: 52:54:00:00:00:01\n# deploy win/);
    assert.match(text, /initrd -n boot\.wim .*\/tftp\/winpe\/sources\/boot\.wim/);
    const m = await (await fetch(`${d.url}/api/v1/machines/52:54:00:00:00:01`, { headers: auth })).json();
    assert.equal(m.deployment.state, 'booting', 'serving the script marks the machine booting');

    const hook = await (await fetch(`${d.url}/boot/52-54-00-00-00-01/swarmboot.cmd`)).text();
    assert.match(hook, /SWARMBOOT_SEQUENCE_URL=http:\/\/127\.0\.0\.1:\d+\/api\/v1\/machines\/52:54:00:00:00:01\/sequence/);
    assert.match(await (await fetch(`${d.url}/boot/52-54-00-00-00-01/winpeshl.ini`)).text(), /\[LaunchApps\]\r\n.*wpeinit\.exe/);

    await fetch(`${d.url}/api/v1/machines/52:54:00:00:00:01/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'step-finished', step: 0 }) });
    assert.match(await (await fetch(`${d.url}/boot/52-54-00-00-00-01.ipxe`)).text(), /# local boot: deployment of win is done.*\n.*\nexit 1\n$/);
    assert.match(await (await fetch(`${d.url}/boot/aa-bb-cc-dd-ee-ff.ipxe`)).text(), /# local boot: default rule: local boot/);
    assert.equal((await fetch(`${d.url}/boot/not-a-mac.ipxe`)).status, 400);
  } finally {
    await d.close();
    cleanup();
  }
});
