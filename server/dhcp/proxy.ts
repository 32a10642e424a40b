/**
 * ProxyDHCP (PXE spec 2.1 §2.2.3): the site's DHCP server hands out addresses; we answer only
 * network-boot clients, only with boot information, never with an address (yiaddr stays 0.0.0.0).
 * DISCOVER on 67 → OFFER; REQUEST on 4011 (or on 67 naming us in option 54) → ACK.
 */
import type { PxeDecision, PxeFacts } from '../../boot/types.ts';
import { MsgType } from './options.ts';
import { Opt } from './options.ts';
import { parseIp } from './ip.ts';
import { linkFor, type Link } from './networks.ts';
import { bootAnswer, bootClass, factsFrom, type BootClass } from './pxe.ts';
import { type Destination, drop, type Inbound, type Outcome, type Reply, replyTo, type ResponderContext } from './respond.ts';
import { readIpOption } from './codec.ts';

function proxyReply(inb: Inbound, ctx: ResponderContext, cls: BootClass, type: 'OFFER' | 'ACK', serverAddress: string, to: Destination):
  { reply?: Reply; facts: PxeFacts; decision: PxeDecision } {
  const req = inb.packet;
  const facts = factsFrom(req, serverAddress);
  const decision = ctx.decide(facts);
  if (decision.action !== 'boot') return { facts, decision };
  const pkt = replyTo(req, type === 'OFFER' ? MsgType.OFFER : MsgType.ACK, serverAddress);
  if (type === 'ACK') pkt.ciaddr = req.ciaddr;
  const boot = bootAnswer(req, decision, cls, serverAddress, ctx.menu);
  pkt.siaddr = boot.siaddr;
  pkt.file = boot.file;
  for (const [k, v] of boot.options) pkt.options.set(k, v);
  return { reply: { type, packet: pkt, to }, facts, decision };
}

/** Links a reply should be broadcast on: the one we can identify, else all of them (see server.ts). */
function broadcastLinks(inb: Inbound, ctx: ResponderContext): Link[] {
  if (inb.local) return [inb.local];
  for (const a of [inb.source.address, inb.packet.ciaddr]) {
    const n = parseIp(a);
    if (n) {
      const l = linkFor(ctx.topo, n);
      if (l) return [l];
    }
  }
  return ctx.topo.links;
}

function advertised(ctx: ResponderContext, link: Link | undefined): string {
  return ctx.serverAddress ?? link?.address ?? ctx.topo.links[0]!.address;
}

export function proxyRespond(inb: Inbound, ctx: ResponderContext): Outcome {
  const req = inb.packet;
  const cls = bootClass(req);
  if (!cls) return drop('not_pxe', 'no PXEClient/HTTPClient vendor class: not ours to answer', true);

  let type: 'OFFER' | 'ACK';
  if (inb.via === 'pxe') {
    if (inb.type !== 'REQUEST' && inb.type !== 'INFORM') return drop('unexpected_type', `${inb.type} on the boot server port`);
    type = 'ACK';
  } else if (inb.type === 'DISCOVER') {
    type = 'OFFER';
  } else if (inb.type === 'REQUEST') {
    // A REQUEST on 67 is for the DHCP server the client chose; answer only if that is us.
    const sid = readIpOption(req.options.get(Opt.SERVER_ID));
    if (!sid || !ctx.topo.serverIds.has(sid)) return drop('other_server', `REQUEST for server ${sid ?? '(none)'}`, true);
    type = 'ACK';
  } else {
    return drop('not_for_proxy', `${inb.type} is for the address server`, true);
  }

  const targets: Array<{ link: Link | undefined; to: Destination }> = [];
  if (req.giaddr !== '0.0.0.0') {
    targets.push({ link: inb.local, to: { kind: 'relay', address: req.giaddr } });
  } else if (inb.via === 'pxe' && inb.source.address !== '0.0.0.0') {
    targets.push({ link: inb.local ?? linkFor(ctx.topo, parseIp(inb.source.address) ?? 0), to: { kind: 'source', ...inb.source } });
  } else {
    for (const link of broadcastLinks(inb, ctx)) targets.push({ link, to: { kind: 'broadcast', link } });
  }

  const replies: Reply[] = [];
  let facts: PxeFacts | undefined;
  let decision: PxeDecision | undefined;
  for (const t of targets) {
    const r = proxyReply(inb, ctx, cls, type, advertised(ctx, t.link), t.to);
    facts = r.facts;
    decision = r.decision;
    if (r.reply) replies.push(r.reply);
  }
  if (!decision || decision.action !== 'boot' || replies.length === 0) {
    return { replies: [], drop: 'decider_ignore', why: decision?.reason ?? 'no decision', ...(facts ? { facts } : {}) };
  }
  const where = replies.length > 1 ? ` on ${replies.length} links` : '';
  return { replies, facts: facts!, answered: `${type} ${cls} ${decision.bootFile}${where}`, why: decision.reason };
}
