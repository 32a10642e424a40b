/**
 * A stand-in for swarmboot's HTTP side, for the harness test only: it runs inside the lab's server
 * namespace (`ip netns exec … node fake-boot-server.ts <json config>`) and serves
 *   GET  /boot.ipxe                                the iPXE script from the config
 *   GET  /vmlinuz, /initrd.gz                      the payload files
 *   GET  /api/v1/machines/<mac>/sequence           a 2-step sequence for known MACs, 404 otherwise
 *   POST /api/v1/machines/<mac>/events             accepted, 200
 * and prints one JSON line per request on stdout (`{"req":{…}}`), so the test, which lives
 * outside the namespace, sees what the VMs asked for.
 */
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';

export interface FakeServerConfig {
  host: string;
  port: number;
  ipxeScript: string;
  files: Record<string, string>;
  /** MACs (lowercase, colons) that get a sequence. */
  macs: string[];
}

export function sequenceFor(mac: string): unknown {
  return {
    mac,
    sequence: 'harness',
    deployment: { key: `harness-${mac}`, generation: 1, state: 'pending', step: null },
    variables: { note: 'the "steps" word in a string must not confuse the step counter' },
    steps: [
      { index: 0, type: 'apply-image', name: 'image', continueOnError: false, image: { index: 1, name: 'WinPE' } },
      { index: 1, type: 'command', name: 'hello', continueOnError: false, command: 'echo {"index":9}' },
    ],
    reportUrl: `/api/v1/machines/${mac}/events`,
  };
}

function serve(cfg: FakeServerConfig): void {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { if (body.length < 65536) body += c; });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (status: number, type: string, text: string) => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
        res.end(text);
        log(status);
      };
      const log = (status: number) => {
        process.stdout.write(JSON.stringify({ req: { method: req.method, path: url.pathname, status, from: req.socket.remoteAddress, ...(body ? { body } : {}) } }) + '\n');
      };
      const m = /^\/api\/v1\/machines\/([^/]+)\/(sequence|events)$/.exec(url.pathname);
      if (req.method === 'GET' && url.pathname === '/boot.ipxe') return send(200, 'text/plain', cfg.ipxeScript);
      const file = cfg.files[url.pathname];
      if (req.method === 'GET' && file) {
        const size = statSync(file).size;
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
        createReadStream(file).pipe(res).on('finish', () => log(200));
        return;
      }
      if (m) {
        const mac = decodeURIComponent(m[1]!).toLowerCase();
        if (m[2] === 'sequence' && req.method === 'GET') {
          if (!cfg.macs.includes(mac)) return send(404, 'application/json', JSON.stringify({ error: `no deployment for ${mac}`, action: 'ignore', state: null }));
          return send(200, 'application/json', JSON.stringify(sequenceFor(mac)));
        }
        if (m[2] === 'events' && req.method === 'POST') {
          try { JSON.parse(body); } catch { return send(400, 'application/json', '{"error":"body is not JSON"}'); }
          if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return send(415, 'application/json', '{"error":"content-type must be application/json"}');
          return send(200, 'application/json', JSON.stringify({ accepted: true }));
        }
      }
      send(404, 'application/json', '{"error":"not found"}');
    });
  });
  server.listen(cfg.port, cfg.host, () => process.stdout.write(`LISTENING ${cfg.host}:${cfg.port}\n`));
  process.on('SIGTERM', () => { server.close(); server.closeAllConnections(); });
}

// A script when run with its config; a harmless module when imported (for sequenceFor and types).
if (import.meta.main && process.argv[2]) serve(JSON.parse(process.argv[2]) as FakeServerConfig);
