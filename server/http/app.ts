/**
 * The HTTP front end: one fastify instance carrying the API, health, metrics and (registered by
 * the daemon) content and boot routes. Logs through the daemon's pino logger; every request is
 * counted for /metrics.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from '../metrics.ts';
import { apiRoutes, type ApiOptions } from './api.ts';

export interface HttpAppOptions extends ApiOptions {
  logger: Logger;
  metrics: Registry;
  health: () => Record<string, unknown>;
  /** Extra route plugins (content, boot scripts), each with its options. */
  plugins?: Array<{ plugin: FastifyPluginAsync<never>; opts: unknown }>;
}

export async function createHttpApp(o: HttpAppOptions): Promise<FastifyInstance> {
  const log = o.logger.child({ component: 'http' });
  const app = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    // Per-request lines go through our onResponse hook at debug level instead.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: false,
    // Machines behind NAT can be slow; never keep a half-open socket forever.
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    requestTimeout: 0,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
  });

  const requests = o.metrics.counter('swarmboot_http_requests_total', 'HTTP requests by route and status');
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: reply.statusCode });
    req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ err, url: req.url }, 'request failed');
    else req.log.debug({ url: req.url, error: err.message }, 'bad request');
    void reply.code(status).send({ error: status >= 500 ? 'internal error (logged on the server)' : err.message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no route for ${req.method} ${req.url.split('?')[0]}` });
  });

  app.get('/healthz', async () => ({ status: 'ok', ...o.health() }));
  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
    return o.metrics.render();
  });

  await app.register(apiRoutes, o);
  for (const p of o.plugins ?? []) await app.register(p.plugin, p.opts as never);
  return app;
}
