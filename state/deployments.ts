/**
 * Where the pure boot decisions meet the state database: asks boot/ what a machine gets, stores what
 * was decided, and hands out the task sequence. Every front end (DHCP, TFTP, iPXE scripts, the API)
 * goes through here, so a machine's deployment moves the same way whichever door it knocks on.
 */
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import { resolveAssignment, type Assignment } from '../boot/assign.ts';
import { applyEvent, planBoot, type BootPlan, type ProgressEvent } from '../boot/deployment.ts';
import { builtinVariables, resolveSequence, SequenceUnavailable, type ContentView, type ResolvedStep } from '../boot/sequence.ts';
import { deploymentOf, type MachineRow, type MachineStore, type SeenFacts } from './machines.ts';

export interface DeploymentsDeps {
  config: () => LoadedConfig;
  store: MachineStore;
  content: () => ContentView;
  /** Base URL machines use to reach the HTTP server, no trailing slash; `via`: the local address the machine's request arrived on. */
  baseUrl: (via?: string) => string;
  serverAddress: () => string;
  logger: Logger;
  /** Told when a deployment ends (done or failed), e.g. to count it. */
  onFinished?: (state: string, sequence: string | null) => void;
}

export type SequenceAnswer =
  | { kind: 'deploy'; body: SequenceBody }
  | { kind: 'refused'; status: 404 | 409 | 503; error: string; action: 'ignore' | 'local' | 'menu' | 'unavailable'; state: string | null };

export interface SequenceBody {
  mac: string;
  sequence: string;
  description?: string;
  deployment: { key: string; generation: number; state: string; step: number | null };
  variables: Record<string, string>;
  steps: ResolvedStep[];
  reportUrl: string;
}

export class Deployments {
  private readonly d: DeploymentsDeps;
  private readonly log: Logger;

  constructor(deps: DeploymentsDeps) {
    this.d = deps;
    this.log = deps.logger.child({ component: 'deployments' });
  }

  assignment(mac: string, uuid?: string): Assignment {
    return resolveAssignment(this.d.config(), { mac, ...(uuid ? { uuid } : {}) });
  }

  /**
   * A machine is booting: decide what it gets and record it. `handout` says the caller is handing
   * out the deployment's boot environment now (iPXE script, boot file), which marks it `booting`.
   */
  boot(mac: string, facts: SeenFacts, opts: { handout: boolean }): { plan: BootPlan; assignment: Assignment } {
    const cfg = this.d.config();
    // Read before recording the sighting, which is written behind (state/machines.ts seen).
    const row = this.d.store.get(mac);
    this.touch(mac, facts);
    const uuid = facts.uuid ?? row?.uuid ?? undefined;
    const assignment = resolveAssignment(cfg, { mac, ...(uuid ? { uuid } : {}) });
    if (assignment.note) this.log.warn({ mac, note: assignment.note }, 'ambiguous machine match');
    const seq = assignment.sequence ? cfg.sequences[assignment.sequence] : undefined;
    const plan = planBoot(assignment, deploymentOf(row), seq);
    if (plan.kind === 'deploy') {
      if (plan.start) this.d.store.startDeployment(mac, plan.deploymentKey, plan.sequence, seq?.steps.length ?? 0, plan.reason);
      if (opts.handout) this.d.store.transition(mac, ['pending'], 'booting', `boot environment handed out (${facts.firmware ?? 'unknown firmware'})`);
    }
    return { plan, assignment };
  }

  /** Sightings are batched and coalesced by the store (state/machines.ts), so every one is recorded. */
  private touch(mac: string, facts: SeenFacts): void {
    this.d.store.seen(mac, facts);
  }

  /** The task sequence for a machine, once: a finished machine is refused and told to boot locally. */
  sequence(mac: string, q: { model?: string; ip?: string; via?: string }): SequenceAnswer {
    const cfg = this.d.config();
    const facts: SeenFacts = { ...(q.model ? { model: q.model } : {}), ...(q.ip ? { ip: q.ip } : {}) };
    const { plan, assignment } = this.boot(mac, facts, { handout: false });
    const row = this.d.store.get(mac);
    if (plan.kind !== 'deploy') {
      const status = plan.kind === 'local' && row?.state ? 409 : 404;
      return { kind: 'refused', status, error: plan.reason, action: plan.kind, state: row?.state ?? null };
    }
    const seq = cfg.sequences[plan.sequence]!;
    const vars = {
      ...assignment.variables,
      ...builtinVariables({
        mac,
        ip: row?.ip,
        uuid: row?.uuid,
        ...(assignment.hostname ? { hostname: assignment.hostname } : {}),
        serverAddress: cfg.server.address ?? q.via ?? this.d.serverAddress(),
        baseUrl: this.d.baseUrl(q.via),
        sequence: plan.sequence,
        generation: row?.generation ?? 0,
      }),
    };
    let steps: ResolvedStep[];
    try {
      const model = q.model ?? row?.model ?? undefined;
      steps = resolveSequence(seq, vars, this.d.content(), { baseUrl: this.d.baseUrl(q.via), ...(model ? { model } : {}) });
    } catch (e) {
      if (e instanceof SequenceUnavailable) return { kind: 'refused', status: 503, error: e.message, action: 'unavailable', state: row?.state ?? null };
      throw e;
    }
    // The agent is up and asking: the machine is past its boot loader.
    this.d.store.transition(mac, ['pending'], 'booting', 'task sequence fetched');
    const now = this.d.store.get(mac)!;
    return {
      kind: 'deploy',
      body: {
        mac,
        sequence: seq.name,
        ...(seq.description ? { description: seq.description } : {}),
        deployment: { key: plan.deploymentKey, generation: now.generation, state: now.state ?? 'pending', step: now.step },
        variables: vars,
        steps,
        reportUrl: `${this.d.baseUrl(q.via)}/api/v1/machines/${mac}/events`,
      },
    };
  }

  /** Progress from the deploying machine. */
  report(mac: string, ev: ProgressEvent): { ok: true; machine: MachineRow; summary: string } | { ok: false; status: 404 | 409 | 422; error: string } {
    const cfg = this.d.config();
    const out = this.d.store.applyProgress(
      mac,
      (current) => {
        if (!current) return { persist: false, result: { ok: false as const, status: 404 as const, error: 'unknown machine' } };
        const seq = current.sequence ? cfg.sequences[current.sequence] : undefined;
        const r = applyEvent(deploymentOf(current), seq, ev);
        if (!r.ok) return { persist: false, result: r };
        return { persist: true, record: r.record, summary: r.summary, result: r };
      },
      ev,
    );
    if (!out.result.ok) return out.result;
    const machine = this.d.store.get(mac)!;
    if (out.result.finished) this.d.onFinished?.(machine.state ?? 'unknown', machine.sequence);
    const level = out.result.finished ? 'info' : 'debug';
    this.log[level]({ mac, event: ev.type, step: ev.step, state: machine.state }, out.result.summary);
    return { ok: true, machine, summary: out.result.summary };
  }

  /** Admin: allow one more deployment of the machine's current assignment. */
  redeploy(mac: string): { ok: true; machine: MachineRow } | { ok: false; status: 409; error: string } {
    const cfg = this.d.config();
    const row = this.d.store.get(mac);
    const a = resolveAssignment(cfg, { mac, ...(row?.uuid ? { uuid: row.uuid } : {}) });
    if (a.action !== 'sequence' || !a.sequence || !a.deploymentKey) {
      return { ok: false, status: 409, error: `no task sequence is assigned to ${mac} (its rule says ${a.action}); assign one in the config first` };
    }
    const seq = cfg.sequences[a.sequence]!;
    const machine = this.d.store.startDeployment(mac, a.deploymentKey, a.sequence, seq.steps.length, 'redeploy requested by an admin');
    this.log.info({ mac, sequence: a.sequence, generation: machine.generation }, 'redeploy requested');
    return { ok: true, machine };
  }
}
