/**
 * `GET /tftp/<path>`: the TFTP root over HTTP, read-only, for iPXE, wimboot and UEFI HTTP boot
 * (HTTP moves a 500 MB boot.wim far faster than TFTP). The same name rules as TFTP apply —
 * backslashes, any case, confined to the root (no `..`, no symlink out) — through the TFTP
 * server's own resolver, and bodies go through the content send path.
 */
import { open, close, fstatSync } from 'node:fs';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { normalizeName, PathResolver } from '../tftp/path.ts';
import { ChunkCache } from './content-chunks.ts';
import { sendRange, stampCheck } from './content-send.ts';
import { TurnGate } from './content-turns.ts';

const openFd = promisify(open);

export interface BootFilesOptions {
  root: () => string;
  turns?: TurnGate;
}

export async function bootFileRoutes(app: FastifyInstance, o: BootFilesOptions): Promise<void> {
  let resolver = new PathResolver(o.root());
  let resolverRoot = o.root();
  const cache = new ChunkCache(1 << 20, 16 << 20);
  const turns = o.turns ?? new TurnGate(4);

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
        return reply.code(400).send({ error: 'bad URL encoding' });
      }
      const name = normalizeName(raw);
      if (!name.ok) return reply.code(name.reason === 'empty' ? 404 : 400).send({ error: `refused path (${name.reason})` });
      const found = await resolver.resolve(name.segments);
      if (!found.ok) return reply.code(404).send({ error: `no file "${name.name}" in the boot files` });
      let fd: number;
      try {
        fd = await openFd(found.path, 'r');
      } catch {
        return reply.code(404).send({ error: `no file "${name.name}" in the boot files` });
      }
      const st = fstatSync(fd, { bigint: true });
      const size = Number(st.size);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': size,
        'last-modified': new Date(Number(st.mtimeNs / 1_000_000n)).toUTCString(),
        'cache-control': 'no-cache',
      });
      if (req.method === 'HEAD' || size === 0) {
        res.end();
        close(fd, () => undefined);
        return;
      }
      const outcome = await sendRange({
        res,
        fd,
        fileKey: `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`,
        size,
        start: 0,
        end: size - 1,
        cache,
        unchanged: stampCheck(fd, st.size, st.mtimeNs, st.ctimeNs),
        turns,
      });
      close(fd, () => undefined);
      req.log.debug({ path: name.name, bytes: size, outcome }, 'boot file sent');
    },
  });
}
