/**
 * What the DHCP front end asks for each PXE request: the machine's boot plan from the state
 * (state/deployments.ts, which also records that it was seen), turned into a DHCP answer by
 * boot/pxe.ts. The daemon and the DHCP benchmark build it the same way.
 */
import type { LoadedConfig } from '../config/load.ts';
import { decidePxe } from '../boot/pxe.ts';
import type { PxeDecider } from '../boot/types.ts';
import type { Deployments } from '../state/deployments.ts';
import type { MachineStore } from '../state/machines.ts';

export function createPxeDecider(o: { deployments: Deployments; store: MachineStore; config: () => LoadedConfig; httpPort: () => number }): PxeDecider {
  return (facts) => {
    const { plan } = o.deployments.boot(facts.mac, { ...(facts.uuid ? { uuid: facts.uuid } : {}), firmware: facts.firmware, ...(facts.clientIp ? { ip: facts.clientIp } : {}) }, { handout: false });
    const cfg = o.config();
    // facts.serverAddress is what this client can reach: server.address only on its own subnet
    // (or through a relay), else the answering interface's address (server/dhcp/networks.ts).
    const port = o.httpPort();
    const url = cfg.server.http.publicUrl ?? `http://${facts.serverAddress}${port === 80 ? '' : `:${port}`}`;
    const decision = decidePxe(facts, cfg, plan, { baseUrl: url });
    if (decision.action === 'boot' && decision.handsOutDeployment) o.store.transition(facts.mac, ['pending'], 'booting', `Windows Boot Manager handed out (${facts.firmware})`);
    return decision;
  };
}
