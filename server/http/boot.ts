/**
 * Boot routes for iPXE: the per-machine script (`/boot/aa-bb-cc-dd-ee-ff.ipxe`) and the small files
 * injected into WinPE (`/boot/aa-bb-…/winpeshl.ini`, `/boot/aa-bb-…/swarmboot.cmd`). Serving a
 * deployment's script marks the machine `booting`: it shows as booting before WinPE or the kernel
 * starts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import { normalizeMac } from '../../config/mac.ts';
import { renderIpxeScript, renderWinpeHook, renderWinpeshl, type ScriptContext } from '../../boot/ipxe.ts';
import { builtinVariables } from '../../boot/sequence.ts';
import { advertisedAddress, viaFromLocalAddress } from '../../boot/pxe.ts';
import type { Deployments } from '../../state/deployments.ts';
import type { MachineStore } from '../../state/machines.ts';
import type { LoadedConfig } from '../../config/load.ts';

export interface BootRoutesOptions {
  deployments: Deployments;
  store: MachineStore;
  config: () => LoadedConfig;
  /** Base URL for a machine that reached us at local address `via` (server.http.publicUrl wins, then `via`, then server.address). */
  baseUrl: (via?: string) => string;
  /** The fallback server address (server.address, or the first detected one). */
  serverAddress: () => string;
}

/**
 * The local address a request arrived on, as a URL host. A machine reached us there, over the
 * link DHCP answered it on, so URLs built from it are reachable from that machine; the first
 * detected address of a multi-homed server may not be. (Not the Host header: a client chooses it.)
 */
export function requestVia(req: FastifyRequest): string | undefined {
  return viaFromLocalAddress(req.socket.localAddress);
}

const ScriptParams = Type.Object({ script: Type.String({ pattern: '^[0-9A-Fa-f:.-]{12,17}\\.ipxe$' }) });
const FileParams = Type.Object({ mac: Type.String({ maxLength: 17 }), name: Type.Union([Type.Literal('winpeshl.ini'), Type.Literal('swarmboot.cmd')]) });

export async function bootRoutes(app: FastifyInstance, o: BootRoutesOptions): Promise<void> {
  const context = (mac: string, via: string | undefined): ScriptContext => {
    const row = o.store.get(mac);
    const a = o.deployments.assignment(mac, row?.uuid ?? undefined);
    const baseUrl = o.baseUrl(via);
    const serverAddress = advertisedAddress(o.config(), via, o.serverAddress());
    return {
      mac,
      baseUrl,
      vars: {
        ...a.variables,
        ...builtinVariables({ mac, ip: row?.ip, uuid: row?.uuid, ...(a.hostname ? { hostname: a.hostname } : {}), serverAddress, baseUrl, ...(a.sequence ? { sequence: a.sequence } : {}), generation: row?.generation ?? 0 }),
      },
    };
  };

  app.get<{ Params: Static<typeof ScriptParams> }>('/boot/:script', { schema: { params: ScriptParams } }, async (req, reply) => {
    const mac = normalizeMac(req.params.script.replace(/\.ipxe$/, ''));
    if (!mac) return reply.code(400).send({ error: 'not a MAC address' });
    const { plan } = o.deployments.boot(mac, { ip: req.ip }, { handout: true });
    req.log.info({ mac, plan: plan.kind, reason: plan.reason }, 'iPXE script');
    void reply.header('content-type', 'text/plain; charset=utf-8').header('cache-control', 'no-store');
    return renderIpxeScript(o.config(), plan, context(mac, requestVia(req)));
  });

  app.get<{ Params: Static<typeof FileParams> }>('/boot/:mac/:name', { schema: { params: FileParams } }, async (req, reply) => {
    const mac = normalizeMac(req.params.mac);
    if (!mac) return reply.code(400).send({ error: 'not a MAC address' });
    void reply.header('content-type', 'text/plain; charset=utf-8').header('cache-control', 'no-store');
    return req.params.name === 'winpeshl.ini' ? renderWinpeshl() : renderWinpeHook(context(mac, requestVia(req)));
  });
}
