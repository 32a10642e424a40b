/**
 * ProxyDHCP (PXE spec 2.1 §2.2.3): the site's DHCP server hands out addresses; we answer only
 * network-boot clients, only with boot information, never with an address (yiaddr stays 0.0.0.0).
 * DISCOVER on 67 → OFFER; REQUEST on 4011 (or on 67 naming us in option 54) → ACK.
 */
import type { PxeDecision, PxeFacts } from '../../boot/types.ts';
import { MsgType } from './options.ts';
import { Opt } from './options.ts';
import { parseIp } from './ip.ts';
import { advertisedAddress, linkFor, type Link } from './networks.ts';
import { applyMenuChoice, bootAnswer, bootClass, factsFrom, type BootClass } from './pxe.ts';
import { type Destination, drop, type Inbound, type Outcome, type Reply, replyTo, type ResponderContext } from './respond.ts';
import { readIpOption } from './codec.ts';

function proxyReply(inb: Inbound, ctx: ResponderContext, type: 'OFFER' | 'ACK', serverAddress: string, to: Destination):
  { reply?: Reply; facts: PxeFacts; decision: PxeDecision; drop?: string; cls?: BootClass } {
  const req = inb.packet;
  const facts = factsFrom(req, serverAddress);
  const decided = ctx.decide(facts);
  // A 4011 request names the PXE menu item the technician picked (sub-option 71).
  const decision = inb.via === 'pxe' ? applyMenuChoice(req, facts, decided, ctx.menu) : decided;
  if (decision.action !== 'boot') return { facts, decision, drop: 'refused' in decision && decision.refused ? 'unknown_boot_item' : 'decider_ignore' };
  const boot = bootAnswer(req, facts, decision, serverAddress, ctx.menu);
  if ('error' in boot) return { facts, decision: { action: 'ignore', reason: boot.error }, drop: 'not_servable' };
  const pkt = replyTo(req, type === 'OFFER' ? MsgType.OFFER : MsgType.ACK, serverAddress);
  if (type === 'ACK') pkt.ciaddr = req.ciaddr;
  pkt.siaddr = boot.siaddr;
  pkt.file = boot.file;
  for (const [k, v] of boot.options) pkt.options.set(k, v);
  return { reply: { type, packet: pkt, to }, facts, decision, cls: boot.cls };
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

function advertised(inb: Inbound, ctx: ResponderContext, link: Link | undefined): string {
  return advertisedAddress(ctx.topo, ctx.serverAddress, link, inb.packet.giaddr !== '0.0.0.0');
}

export function proxyRespond(inb: Inbound, ctx: ResponderContext): Outcome {
  const req = inb.packet;
  if (!bootClass(req)) return drop('not_pxe', 'no PXEClient/HTTPClient vendor class: not ours to answer', true);

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
  let last: ReturnType<typeof proxyReply> | undefined;
  let cls: BootClass | undefined;
  for (const t of targets) {
    last = proxyReply(inb, ctx, type, advertised(inb, ctx, t.link), t.to);
    if (last.reply) {
      replies.push(last.reply);
      cls = last.cls;
    }
  }
  if (!last || last.decision.action !== 'boot' || replies.length === 0) {
    return { replies: [], drop: last?.drop ?? 'decider_ignore', why: last?.decision.reason ?? 'no decision', ...(last ? { facts: last.facts } : {}) };
  }
  const where = replies.length > 1 ? ` on ${replies.length} links` : '';
  return { replies, facts: last.facts, answered: `${type} ${cls} ${last.decision.bootFile}${where}`, why: last.decision.reason };
}
