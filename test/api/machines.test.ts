import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir, writeFiles, daemonFor, serverSection, ADMIN_TOKEN } from '../helpers.ts';

const { dir, cleanup } = tempDir('sbt-api-');
let d: Awaited<ReturnType<typeof daemonFor>>;
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

const CONFIG = `${serverSection()}
sequences:
  basic:
    variables: { greeting: hello, ou: null }
    steps:
      - { name: Say hello, type: command, run: "echo {{ greeting }} {{ hostname }} {{ mac_hyphen }} {{ ou }}" }
      - { type: reboot }
      - { type: command, run: "echo done at step {{ step }} of {{sequence}}" }
machines:
  default: { action: ignore }
  hosts:
    - mac: 52:54:00:aa:bb:01
      hostname: pc-01
      sequence: basic
      variables: { ou: "OU=Lab" }
    - mac: 52:54:00:aa:bb:02
      hostname: pc-02
      sequence: basic
      variables: { ou: "OU=Lab" }
    - mac: 52:54:00:aa:bb:03
      action: local
`;

before(async () => {
  writeFiles(dir, { 'swarmboot.yaml': CONFIG });
  d = await daemonFor(join(dir, 'swarmboot.yaml'));
});
after(async () => {
  await d?.close();
  cleanup();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${d.url}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

test('the sequence is resolved with variables, and every MAC spelling names the same machine', async () => {
  const r = await call('GET', '/api/v1/machines/52-54-00-AA-BB-01/sequence');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.mac, '52:54:00:aa:bb:01');
  assert.equal(r.json.sequence, 'basic');
  assert.equal(r.json.steps.length, 3);
  assert.equal(r.json.steps[0].run, 'echo hello pc-01 52-54-00-aa-bb-01 OU=Lab');
  assert.equal(r.json.steps[1].into, 'local');
  assert.equal(r.json.steps[2].run, 'echo done at step 2 of basic', '{{ step }} is the index of the step it is written in');
  assert.equal(r.json.deployment.generation, 1);
  assert.equal(r.json.deployment.state, 'booting');
  assert.match(r.json.reportUrl, /\/api\/v1\/machines\/52:54:00:aa:bb:01\/events$/);
  for (const spelling of ['525400aabb01', '52:54:00:aa:bb:01', '5254.00AA.BB01']) {
    const again = await call('GET', `/api/v1/machines/${spelling}/sequence`);
    assert.equal(again.status, 200, spelling);
    assert.equal(again.json.deployment.generation, 1, `${spelling}: same deployment, not a new one`);
  }
  const bad = await call('GET', '/api/v1/machines/not-a-mac-at-all/sequence');
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /not a MAC address/);
});

test('admin calls need the bearer token; without it 401 and nothing changes', async () => {
  assert.equal((await call('GET', '/api/v1/machines')).status, 401);
  assert.equal((await call('GET', '/api/v1/machines', undefined, { authorization: 'Bearer wrong-token-wrong-token' })).status, 401);
  assert.equal((await call('GET', '/api/v1/machines/52:54:00:aa:bb:01', undefined, { authorization: ADMIN_TOKEN })).status, 401);
  const before = await call('GET', '/api/v1/machines/52:54:00:aa:bb:01', undefined, auth);
  const refused = await call('POST', '/api/v1/machines/52:54:00:aa:bb:01/redeploy');
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get('www-authenticate'), 'Bearer realm="swarmboot"');
  const afterCall = await call('GET', '/api/v1/machines/52:54:00:aa:bb:01', undefined, auth);
  assert.equal(afterCall.json.deployment.generation, before.json.deployment.generation);
  assert.equal(afterCall.json.events.length, before.json.events.length);
});

test('progress events run the deployment to done; then the machine is told to boot locally', async () => {
  const mac = '52:54:00:aa:bb:01';
  const post = (ev: object) => call('POST', `/api/v1/machines/${mac}/events`, ev);
  assert.equal((await post({ type: 'started' })).status, 200);
  assert.equal((await post({ type: 'step-started', step: 0 })).status, 200);
  assert.equal((await post({ type: 'step-progress', step: 0, percent: 42.5, message: 'working' })).status, 200);
  assert.equal((await post({ type: 'step-finished', step: 0 })).status, 200);
  const bad = await post({ type: 'step-started', step: 7 });
  assert.equal(bad.status, 422);
  assert.match(bad.json.error, /step 7 does not exist/);
  assert.equal((await post({ type: 'bogus' })).status, 400);
  assert.equal((await post({ type: 'started', extra: 1 })).status, 400);
  assert.equal((await post({ type: 'step-started', step: 1 })).status, 200);
  assert.equal((await post({ type: 'step-finished', step: 1 })).status, 200);
  const last = await post({ type: 'step-finished', step: 2 });
  assert.equal(last.status, 200);
  assert.equal(last.json.state, 'done');

  const seq = await call('GET', `/api/v1/machines/${mac}/sequence`);
  assert.equal(seq.status, 409);
  assert.equal(seq.json.action, 'local');
  assert.equal(seq.json.state, 'done');
  const late = await post({ type: 'step-started', step: 0 });
  assert.equal(late.status, 409, 'progress for a finished deployment is refused');

  const m = await call('GET', `/api/v1/machines/${mac}`, undefined, auth);
  assert.equal(m.status, 200);
  assert.equal(m.json.deployment.state, 'done');
  assert.equal(m.json.assignment.nextBoot, 'local');
  assert.ok(m.json.deployment.finishedAt);
  const types = m.json.events.map((e: { type: string }) => e.type);
  assert.deepEqual(types.slice(0, 3), ['deployment-assigned', 'state-booting', 'started']);
  assert.equal(types.at(-1), 'step-finished');
});

test('redeploy allows exactly one more deployment', async () => {
  const mac = '52:54:00:aa:bb:01';
  const r = await call('POST', `/api/v1/machines/${mac}/redeploy`, undefined, auth);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.deployment.state, 'pending');
  assert.equal(r.json.deployment.generation, 2);
  const seq = await call('GET', `/api/v1/machines/${mac}/sequence`);
  assert.equal(seq.status, 200);
  assert.equal(seq.json.deployment.generation, 2);
  const local = await call('POST', '/api/v1/machines/52:54:00:aa:bb:03/redeploy', undefined, auth);
  assert.equal(local.status, 409);
  assert.match(local.json.error, /no task sequence is assigned/);
});

test('machines not assigned a sequence get 404 or 409 with what to do instead', async () => {
  const unknown = await call('GET', '/api/v1/machines/de:ad:be:ef:00:01/sequence');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.action, 'ignore');
  const local = await call('GET', '/api/v1/machines/52:54:00:aa:bb:03/sequence');
  assert.equal(local.json.action, 'local');
});

test('concurrent event posts are all recorded, none lost', async () => {
  const mac = '52:54:00:aa:bb:02';
  assert.equal((await call('GET', `/api/v1/machines/${mac}/sequence`)).status, 200);
  const N = 200;
  const results = await Promise.all(
    Array.from({ length: N }, (_, i) => call('POST', `/api/v1/machines/${mac}/events`, { type: 'step-progress', step: 0, percent: (i % 100) + 0.5 })),
  );
  assert.ok(results.every((r) => r.status === 200));
  const m = await call('GET', `/api/v1/machines/${mac}`, undefined, auth);
  const progress = m.json.events.filter((e: { type: string }) => e.type === 'step-progress');
  assert.equal(progress.length, N);
  assert.equal(m.json.deployment.state, 'running');
});

test('the admin list merges configured and seen machines; health and metrics answer', async () => {
  const list = await call('GET', '/api/v1/machines', undefined, auth);
  assert.equal(list.status, 200);
  const macs = list.json.machines.map((m: { mac: string }) => m.mac);
  assert.ok(macs.includes('52:54:00:aa:bb:03'), 'configured but never seen');
  assert.ok(macs.includes('de:ad:be:ef:00:01'), 'seen but not configured');
  const h = await call('GET', '/healthz');
  assert.equal(h.json.status, 'ok');
  const metrics = await fetch(`${d.url}/metrics`).then((r) => r.text());
  assert.match(metrics, /swarmboot_machines\{state="running"\} 1/);
  assert.match(metrics, /swarmboot_machines\{state="booting"\} 1/, "pc-01 fetched its sequence again after the redeploy");
  assert.match(metrics, /swarmboot_http_requests_total\{method="POST",route="\/api\/v1\/machines\/:mac\/events",status="200"\} \d+/);
  assert.match(metrics, /swarmboot_http_requests_total\{method="GET",route="\/api\/v1\/machines",status="401"\} \d+/);
  assert.match(metrics, /swarmboot_machines\{state="failed"\} 0/, 'every state has a series, also at zero');
  assert.match(metrics, /swarmboot_deployments_finished_total\{result="done"\} 1/);
  assert.match(metrics, /swarmboot_deployments_finished_total\{result="failed"\} 0/);
  assert.match(metrics, /swarmboot_config_reloads_total\{result="refused"\} 0/, 'reload counters exist before the first reload');
  assert.match(metrics, /swarmboot_config_last_reload_ok 1/);
  assert.match(metrics, /swarmboot_build_info\{version="\d+\.\d+\.\d+",node="v\d+[^"]*"\} 1/);
});
