/**
 * The per-machine API. Machines (unauthenticated, as WDS and ConfigMgr PXE clients are): fetch the
 * task sequence, report progress. Admins (bearer token): list machines, one machine with its
 * history, redeploy.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { timingSafeEqual, createHash } from 'node:crypto';
import { normalizeMac } from '../../config/mac.ts';
import type { LoadedConfig } from '../../config/load.ts';
import { planBoot } from '../../boot/deployment.ts';
import { resolveAssignment } from '../../boot/assign.ts';
import { deploymentOf, type MachineRow, type MachineStore } from '../../state/machines.ts';
import type { Deployments } from '../../state/deployments.ts';
import { reportedModel, SequenceModelQuery, type SequenceModelQueryT } from './content-models.ts';
import { requestVia } from './boot.ts';
import {
  ErrorBody,
  EventAccepted,
  EventBody,
  EventPage,
  EventsQuery,
  MacParams,
  MachineDetailOut,
  MachineList,
  SequenceOut,
  SequenceRefused,
  type EventBodyT,
  type EventsQueryT,
  type MacParamsT,
  type MachineOutT,
} from './schemas.ts';

export interface ApiOptions {
  deployments: Deployments;
  store: MachineStore;
  config: () => LoadedConfig;
  /** The admin token; undefined means admin calls are refused. */
  adminToken: () => string | undefined;
}

function macOf(req: FastifyRequest<{ Params: MacParamsT }>, reply: FastifyReply): string | undefined {
  const mac = normalizeMac(req.params.mac);
  if (!mac) {
    void reply.code(400).send({ error: `"${req.params.mac}" is not a MAC address (use aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff)` });
    return undefined;
  }
  return mac;
}

/** Constant-time bearer-token check (hashes first so lengths never leak). */
export function tokenMatches(header: string | undefined, token: string | undefined): boolean {
  if (!token || !header) return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

export async function apiRoutes(app: FastifyInstance, opts: ApiOptions): Promise<void> {
  const { deployments, store, config } = opts;

  const requireAdmin = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!tokenMatches(req.headers.authorization, opts.adminToken())) {
      req.log.warn({ url: req.url, ip: req.ip }, 'admin call refused: missing or wrong bearer token');
      return reply.code(401).header('www-authenticate', 'Bearer realm="swarmboot"').send({ error: 'admin token required: send Authorization: Bearer <token>' });
    }
  };

  const view = (mac: string, row: MachineRow | undefined): MachineOutT => {
    const cfg = config();
    const a = resolveAssignment(cfg, { mac, ...(row?.uuid ? { uuid: row.uuid } : {}) });
    const seq = a.sequence ? cfg.sequences[a.sequence] : undefined;
    const plan = planBoot(a, deploymentOf(row), seq);
    return {
      mac,
      uuid: row?.uuid ?? a.host?.uuid ?? null,
      firstSeen: row?.firstSeen ?? null,
      lastSeen: row?.lastSeen ?? null,
      firmware: row?.firmware ?? null,
      ip: row?.ip ?? null,
      model: row?.model ?? null,
      assignment: {
        matchedBy: a.matchedBy,
        action: a.action,
        sequence: a.sequence ?? null,
        group: a.group ?? null,
        hostname: a.hostname ?? null,
        labels: a.labels,
        nextBoot: plan.kind === 'deploy' ? `deploy ${plan.sequence}${plan.start ? ' (new deployment)' : ''}` : plan.kind,
      },
      deployment: {
        key: row?.deploymentKey ?? null,
        sequence: row?.sequence ?? null,
        state: row?.state ?? null,
        generation: row?.generation ?? 0,
        step: row?.step ?? null,
        stepTotal: row?.stepTotal ?? null,
        percent: row?.percent ?? null,
        message: row?.message ?? null,
        startedAt: row?.startedAt ?? null,
        finishedAt: row?.finishedAt ?? null,
        stateChangedAt: row?.stateChangedAt ?? null,
      },
    };
  };

  app.get<{ Params: MacParamsT; Querystring: SequenceModelQueryT }>(
    '/api/v1/machines/:mac/sequence',
    { schema: { params: MacParams, querystring: SequenceModelQuery, response: { 200: SequenceOut, 400: ErrorBody, 404: SequenceRefused, 409: SequenceRefused, 503: SequenceRefused } } },
    async (req, reply) => {
      const mac = macOf(req, reply);
      if (!mac) return reply;
      // Several SMBIOS strings (repeated model=, product=, version=) travel as one, one per line.
      const model = reportedModel(req.query);
      const via = requestVia(req);
      // URLs in the sequence name the address this machine reached us at (multi-homed servers).
      const ans = deployments.sequence(mac, { ...(model ? { model } : {}), ip: req.ip, ...(via ? { via } : {}) });
      if (ans.kind === 'deploy') return ans.body;
      return reply.code(ans.status).send({ error: ans.error, action: ans.action, state: ans.state });
    },
  );

  app.post<{ Params: MacParamsT; Body: EventBodyT }>(
    '/api/v1/machines/:mac/events',
    { schema: { params: MacParams, body: EventBody, response: { 200: EventAccepted, '4xx': ErrorBody } } },
    async (req, reply) => {
      const mac = macOf(req, reply);
      if (!mac) return reply;
      const r = deployments.report(mac, req.body);
      if (!r.ok) return reply.code(r.status).send({ error: r.error });
      return { accepted: true, state: r.machine.state, step: r.machine.step, summary: r.summary };
    },
  );

  app.get('/api/v1/machines', { preHandler: requireAdmin, schema: { response: { 200: MachineList, 401: ErrorBody } } }, async () => {
    const rows = new Map(store.list().map((r) => [r.mac, r]));
    const macs = new Set(rows.keys());
    for (const h of config().hosts) if (h.mac) macs.add(h.mac);
    return { machines: [...macs].sort().map((mac) => view(mac, rows.get(mac))) };
  });

  app.get<{ Params: MacParamsT }>(
    '/api/v1/machines/:mac',
    { preHandler: requireAdmin, schema: { params: MacParams, response: { 200: MachineDetailOut, '4xx': ErrorBody } } },
    async (req, reply) => {
      const mac = macOf(req, reply);
      if (!mac) return reply;
      const row = store.get(mac);
      if (!row && !config().index.byMac.has(mac)) return reply.code(404).send({ error: `machine ${mac} has never been seen and is not in the config` });
      return { ...view(mac, row), events: store.events(mac) };
    },
  );

  // The whole event history, newest page first (the machine view carries the latest 200).
  app.get<{ Params: MacParamsT; Querystring: EventsQueryT }>(
    '/api/v1/machines/:mac/events',
    { preHandler: requireAdmin, schema: { params: MacParams, querystring: EventsQuery, response: { 200: EventPage, '4xx': ErrorBody } } },
    async (req, reply) => {
      const mac = macOf(req, reply);
      if (!mac) return reply;
      const limit = req.query.limit ?? 200;
      const events = store.events(mac, limit + 1, req.query.before);
      const more = events.length > limit;
      const page = more ? events.slice(1) : events;
      return { mac, events: page, next: more ? page[0]!.id : null };
    },
  );

  app.post<{ Params: MacParamsT }>(
    '/api/v1/machines/:mac/redeploy',
    { preHandler: requireAdmin, schema: { params: MacParams, response: { 200: MachineDetailOut, '4xx': ErrorBody } } },
    async (req, reply) => {
      const mac = macOf(req, reply);
      if (!mac) return reply;
      const r = deployments.redeploy(mac);
      if (!r.ok) return reply.code(r.status).send({ error: r.error });
      return { ...view(mac, r.machine), events: store.events(mac) };
    },
  );
}
