import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
    const local = await (await fetch(`${d.url}/boot/52-54-00-00-00-01.ipxe`)).text();
    assert.match(local, /# local boot: deployment of win is done.*\niseq \$\{platform\} efi && goto local_efi \|\|\n/);
    assert.match(local, /\nsanboot --no-describe --drive 0x80 \|\|\n[^]*\n:local_efi\n.*\nexit 1\n$/);
    assert.match(await (await fetch(`${d.url}/boot/aa-bb-cc-dd-ee-ff.ipxe`)).text(), /# local boot: default rule: local boot/);
    assert.equal((await fetch(`${d.url}/boot/not-a-mac.ipxe`)).status, 400);
  } finally {
    await d.close();
    cleanup();
  }
});

test('without server.address, the script and the WinPE hook name the address the request arrived on (127.0.0.2, 127.0.0.3: loopback aliases)', async () => {
  const { dir, cleanup } = tempDir('sbt-via-');
  writeFiles(dir, {
    'swarmboot.yaml': `server:
  dataDir: data
  contentDir: content
  http: { host: 0.0.0.0, port: 0 }
  tftp: { enabled: false }
  dhcp: { enabled: false }
boot:
  profiles:
    deb: { type: linux, kernel: debian/linux, cmdline: "srv={{ server }} url={{ server_url }} ip={{ ip }}" }
    pe: { type: winpe, dir: winpe }
sequences:
  lin: { profile: deb, steps: [{ type: command, run: x }] }
  win: { profile: pe, steps: [{ type: command, run: x }] }
machines:
  hosts:
    - { mac: "52:54:00:00:00:21", sequence: lin }
    - { mac: "52:54:00:00:00:22", sequence: win }
`,
  });
  const d = await daemonFor(join(dir, 'swarmboot.yaml'));
  const port = d.httpAddress().port;
  try {
    assert.doesNotMatch(d.baseUrl(), /\/\/127\.0\.0\.[23]:/, 'the fallback is some other address');
    for (const host of ['127.0.0.2', '127.0.0.3']) {
      const url = `http://${host}:${port}`;
      const s = await (await fetch(`${url}/boot/52-54-00-00-00-21.ipxe`)).text();
      assert.ok(s.includes(`kernel ${url}/tftp/debian/linux srv=${host} url=${url} ip=127.0.0.1 && goto kernel_ok ||`), s);
      assert.ok(s.includes(`chain --replace ${url}/boot/52-54-00-00-00-21.ipxe`), s);
      const pe = await (await fetch(`${url}/boot/52-54-00-00-00-22.ipxe`)).text();
      assert.ok(pe.includes(`initrd -n boot.wim ${url}/tftp/winpe/sources/boot.wim `), pe);
      assert.ok(pe.includes(`initrd -n swarmboot.cmd ${url}/boot/52-54-00-00-00-22/swarmboot.cmd `), pe);
      const hook = await (await fetch(`${url}/boot/52-54-00-00-00-22/swarmboot.cmd`)).text();
      assert.ok(hook.includes(`\r\nset SWARMBOOT_URL=${url}\r\n`), hook);
      const seq = (await (await fetch(`${url}/api/v1/machines/52-54-00-00-00-22/sequence`)).json()) as { reportUrl: string; variables: Record<string, string> };
      assert.equal(seq.reportUrl, `${url}/api/v1/machines/52:54:00:00:00:22/events`, 'the sequence names the address the agent reached');
      assert.equal(seq.variables.server_url, url);
    }
  } finally {
    await d.close();
    cleanup();
  }
});

/**
 * The curl.exe lines of swarmboot.cmd, run with real curl: cmd's expansion (`%NAME%` from the
 * hook's own `set` lines, `%%` → `%`) is done here, `%SYSTEMDRIVE%` is a temporary folder.
 */
function hookCommands(hook: string, systemDrive: string): { env: Map<string, string>; fetch: string[]; startedJson: { file: string; text: string }; post: string[] } {
  const lines = hook.split('\r\n');
  const env = new Map<string, string>([['SYSTEMDRIVE', systemDrive]]);
  const expand = (t: string) => t.replace(/%%|%([A-Z_]+)%/g, (m, n: string | undefined) => (m === '%%' ? '%' : (env.get(n!) ?? m))).replace(/\\/g, '/');
  for (const l of lines) {
    const m = /^set ([A-Z_]+)=(.*)$/.exec(l);
    if (m && m[2]) env.set(m[1]!, expand(m[2]));
  }
  const words = (l: string) => [...expand(l).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  const curlLine = (re: RegExp) => {
    const l = lines.find((x) => re.test(x));
    assert.ok(l, `${re}`);
    return words(l.replace(/^if %SWARMBOOT_FETCH%==curl /, ''));
  };
  const fetch = curlLine(/^if %SWARMBOOT_FETCH%==curl curl\.exe .*%SWARMBOOT_SEQUENCE_URL%/);
  const post = curlLine(/^if %SWARMBOOT_FETCH%==curl curl\.exe .*-X POST/);
  const echo = /^>"([^"]+)" echo (.*)$/.exec(lines.find((x) => x.includes('swarmboot-started.json" echo '))!)!;
  return { env, fetch, startedJson: { file: expand(echo[1]!), text: `${echo[2]}\r\n` }, post };
}

test('swarmboot.cmd: its curl.exe commands, run with real curl, fetch this machine\'s sequence and report started (booting → running)', async () => {
  const { dir, cleanup } = tempDir('sbt-hook-');
  writeFiles(dir, {
    'swarmboot.yaml': `${serverSection()}
boot:
  profiles:
    pe: { type: winpe, dir: winpe }
sequences:
  win: { profile: pe, steps: [{ type: command, run: "echo {{ hostname }}" }, { type: command, run: "echo two" }] }
machines:
  hosts:
    - { mac: "52:54:00:00:00:31", sequence: win, hostname: pe31 }
`,
  });
  const d = await daemonFor(join(dir, 'swarmboot.yaml'));
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const x = join(dir, 'X');
  mkdirSync(x);
  try {
    await fetch(`${d.url}/boot/52-54-00-00-00-31.ipxe`);
    const hook = await (await fetch(`${d.url}/boot/52-54-00-00-00-31/swarmboot.cmd`)).text();
    const c = hookCommands(hook, x);
    // curl -o SEQUENCE_FILE -w %{http_code} URL > STATUS_FILE
    assert.equal(c.fetch[0], 'curl.exe');
    const redirect = c.fetch.findIndex((w) => w.startsWith('>'));
    const statusFile = c.fetch[redirect]!.slice(1).replace(/"/g, '');
    // Not execFileSync: the daemon answering curl runs in this process.
    const curl = async (args: string[]) => (await promisify(execFile)('curl', args, { encoding: 'utf8', timeout: 20_000 })).stdout;
    const status = await curl(c.fetch.slice(1, redirect));
    writeFileSync(statusFile, status);
    assert.equal(readFileSync(c.env.get('SWARMBOOT_STATUS_FILE')!, 'utf8'), '200', 'what set /p reads');
    const seq = JSON.parse(readFileSync(c.env.get('SWARMBOOT_SEQUENCE_FILE')!, 'utf8')) as { mac: string; sequence: string; steps: Array<{ run: string }> };
    assert.equal(seq.mac, '52:54:00:00:00:31');
    assert.equal(seq.sequence, 'win');
    assert.deepEqual(seq.steps.map((s) => s.run), ['echo pe31', 'echo two']);

    writeFileSync(c.startedJson.file, c.startedJson.text);
    assert.equal(c.post[0], 'curl.exe');
    await curl(c.post.slice(1).map((w) => w.replace(/^nul$/, '/dev/null')));
    const m = await (await fetch(`${d.url}/api/v1/machines/52:54:00:00:00:31`, { headers: auth })).json();
    assert.equal(m.deployment.state, 'running', JSON.stringify(m.events));
    assert.ok(m.events.some((e: { message: string | null }) => /swarmboot\.cmd fetched the task sequence/.test(e.message ?? '')), JSON.stringify(m.events));

    // A finished machine: the same command gets a 4xx status, which the hook prints and does not retry.
    await fetch(`${d.url}/api/v1/machines/52:54:00:00:00:31/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'step-finished', step: 1 }) });
    const refused = await curl(c.fetch.slice(1, redirect));
    assert.match(refused, /^4\d\d$/);
    assert.match(readFileSync(c.env.get('SWARMBOOT_SEQUENCE_FILE')!, 'utf8'), /done/);
  } finally {
    await d.close();
    cleanup();
  }
});
