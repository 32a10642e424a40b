/**
 * `GET`/`HEAD /tftp/<path>`: the TFTP root over HTTP, read-only, for iPXE, wimboot and UEFI HTTP
 * boot (HTTP moves a 500 MB boot.wim far faster than TFTP, which matters most on a branch link).
 * The same name rules as TFTP apply — backslashes, any case, confined to the root (no `..`, no
 * symlink out) — through the TFTP server's own resolver. Bodies go out exactly as /content's do
 * (content-sender.ts): Range, If-Range, ETag (from the file's stamp: boot files are not hashed),
 * Last-Modified, 304s, the same bandwidth limits and send path, and the same metrics under
 * `route="tftp"`. A file changed in place during a transfer is cut short, never mixed.
 */
import { close, fstat, open, type BigIntStats } from 'node:fs';
import { promisify } from 'node:util';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { silentLogger, type Logger } from '../log.ts';
import { Registry } from '../metrics.ts';
import { normalizeName, PathResolver } from '../tftp/path.ts';
import type { ContentLimits } from './content-limit.ts';
import { FileSender } from './content-sender.ts';
import type { TurnGate } from './content-turns.ts';

const openFd = promisify(open);
const fstatBig = (fd: number): Promise<BigIntStats> =>
  new Promise((resolve, reject) => fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));

export interface BootFilesOptions {
  root: () => string;
  /** How files go out; share the /content route's (daemon.ts). Without it one is made here. */
  sender?: FileSender;
  logger?: Logger;
  metrics?: Registry;
  limits?: ContentLimits | (() => ContentLimits | undefined);
  turns?: TurnGate;
}

export async function bootFileRoutes(app: FastifyInstance, o: BootFilesOptions): Promise<void> {
  let resolver = new PathResolver(o.root());
  let resolverRoot = o.root();
  const sender =
    o.sender ??
    new FileSender({
      logger: o.logger ?? silentLogger(),
      metrics: o.metrics ?? new Registry(),
      ...(o.limits !== undefined ? { limits: o.limits } : {}),
      ...(o.turns !== undefined ? { turns: o.turns } : {}),
    });

  const refuse = (req: FastifyRequest, reply: FastifyReply, status: 400 | 404, error: string): FastifyReply => {
    sender.count('tftp', req.method, status);
    return reply.code(status).send({ error });
  };

  app.route({
    method: ['GET', 'HEAD'],
    url: '/tftp/*',
    handler: async (req, reply) => {
      if (o.root() !== resolverRoot) {
        resolverRoot = o.root();
        resolver = new PathResolver(resolverRoot);
      }
      let raw: string;
      try {
        raw = decodeURIComponent((req.raw.url ?? '').split('?')[0]!.slice('/tftp/'.length));
      } catch {
        return refuse(req, reply, 400, 'bad URL encoding');
      }
      const name = normalizeName(raw);
      if (!name.ok) return refuse(req, reply, name.reason === 'empty' ? 404 : 400, `refused path (${name.reason})`);
      const found = await resolver.resolve(name.segments);
      if (!found.ok) return refuse(req, reply, 404, `no file "${name.name}" in the boot files`);
      let fd: number;
      try {
        fd = await openFd(found.path, 'r');
      } catch {
        return refuse(req, reply, 404, `no file "${name.name}" in the boot files`);
      }
      let stat: BigIntStats;
      try {
        stat = await fstatBig(fd);
      } catch {
        close(fd, () => undefined);
        return refuse(req, reply, 404, `no file "${name.name}" in the boot files`);
      }
      if (!stat.isFile()) {
        close(fd, () => undefined);
        return refuse(req, reply, 404, `no file "${name.name}" in the boot files`);
      }
      await sender.send(req, reply, { fd, stat, route: 'tftp', name: name.name });
    },
  });
}
