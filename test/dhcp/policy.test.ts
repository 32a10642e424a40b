/**
 * The DHCP front end with swarmboot's real boot decision (boot/pxe.ts and a loaded config), as the
 * daemon wires it: unknown architectures by policy, iPXE recognised by either sign alone, and UEFI
 * HTTP boot answered as HTTPClient with a URL whatever option 60 says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../config/load.ts';
import { decidePxe } from '../../boot/pxe.ts';
import type { PxeDecider } from '../../boot/types.ts';
import { Opt } from '../../server/dhcp/options.ts';
import { clientBuf, MsgType, type ClientOpts } from './packets.ts';
import { harness } from './harness.ts';

const MAC = '52:54:00:bb:00:01';
const SCRIPT = 'http://10.66.0.1:8080/boot/52-54-00-bb-00-01.ipxe';

function realDecider(unknownArch: 'ignore' | 'bios' | 'uefi-x64'): PxeDecider {
  const cfg = loadConfigText('/cfg/policy.yaml', `server:
  dataDir: data
  dhcp: { unknownArch: ${unknownArch} }
boot:
  loaders: { bios: undionly.kpxe, uefi-x64: ipxe.efi, uefi-arm64: arm64/ipxe.efi, uefi-http-x64: ipxe.efi }
`);
  // A machine assigned the iPXE boot menu: firmware gets the loader for its architecture.
  return (facts) => decidePxe(facts, cfg, { kind: 'menu', reason: 'boot menu' }, { baseUrl: `http://${facts.serverAddress}:8080` });
}

const ask = (decide: PxeDecider, o: Partial<ClientOpts>, mode: 'proxy' | 'full' = 'proxy') => {
  const t = harness({ mode, decide, ...(mode === 'full' ? { pools: [{ subnet: '10.66.0.0/24', rangeStart: '10.66.0.100', rangeEnd: '10.66.0.110' }] } : {}) }, undefined, { capture: true });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, ...o }));
  return { r, p: r.replies[0], logs: t.logs };
};

test('dhcp.unknownArch: ignore, bios and uefi-x64 for an option 93 code nobody registered', () => {
  for (const [policy, file] of [['ignore', undefined], ['bios', 'undionly.kpxe'], ['uefi-x64', 'ipxe.efi']] as const) {
    const decide = realDecider(policy);
    const { r, p, logs } = ask(decide, { arch: 0x4242 });
    assert.ok(logs.some((l) => l.msg === 'unknown client architecture; boot policy decides' && l.arch === 0x4242), `${policy}: logged`);
    if (file === undefined) {
      assert.equal(r.out.length, 0);
      assert.equal(r.reason, 'decider_ignore');
      assert.ok(logs.some((l) => l.mac === MAC && /dhcp\.unknownArch is ignore/.test(String(l.why))));
      continue;
    }
    assert.equal(p!.file, file, policy);
    assert.equal(p!.options.get(Opt.BOOTFILE)!.toString(), file);
    assert.equal(p!.options.get(Opt.VENDOR_CLASS)!.toString(), 'PXEClient');
    // The same through option 60's Arch field alone, and in full mode with an address.
    assert.equal(ask(decide, { vendorClass: 'PXEClient:Arch:16962:UNDI:003016' }).p!.file, file, `${policy} via option 60`);
    const full = ask(decide, { arch: 0x4242 }, 'full').p!;
    assert.equal(full.yiaddr, '10.66.0.100');
    assert.equal(full.file, file);
  }
});

test('iPXE is recognised by option 175 alone and by user class 77 alone, and never gets iPXE again', () => {
  const decide = realDecider('ignore');
  const signs: Array<[string, Array<[number, Buffer]>]> = [
    ['option 175 only', [[Opt.IPXE_ENCAP, Buffer.from([0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e])]]],
    ['user class "iPXE" only (as iPXE sends it)', [[Opt.USER_CLASS, Buffer.from('iPXE')]]],
    ['user class "iPXE" only (RFC 3004 form)', [[Opt.USER_CLASS, Buffer.from('\x04iPXE', 'latin1')]]],
  ];
  for (const [what, extra] of signs) {
    for (const arch of [0, 7, 11]) {
      for (const mode of ['proxy', 'full'] as const) {
        const { p } = ask(decide, { arch, extra }, mode);
        const bootfile = p!.options.get(Opt.BOOTFILE)!.toString();
        assert.equal(bootfile, SCRIPT, `${what}, arch ${arch}, ${mode}`);
        assert.equal(p!.file, SCRIPT);
        assert.doesNotMatch(bootfile, /undionly|ipxe\.efi|\.kpxe/, 'no chainload loop');
      }
    }
  }
  // Neither sign: firmware, which gets the iPXE loader.
  assert.equal(ask(decide, { arch: 0, extra: [[Opt.USER_CLASS, Buffer.from('\x04MSFT', 'latin1')]] }).p!.file, 'undionly.kpxe');
});

test('UEFI HTTP boot (arch 15/16/19) is answered as HTTPClient with a full URL even when option 60 says PXEClient', () => {
  const decide = realDecider('ignore');
  for (const vendorClass of ['HTTPClient:Arch:00016:UNDI:003016', 'PXEClient:Arch:00016:UNDI:003016']) {
    for (const mode of ['proxy', 'full'] as const) {
      const { p } = ask(decide, { arch: 16, vendorClass }, mode);
      assert.equal(p!.options.get(Opt.VENDOR_CLASS)!.toString(), 'HTTPClient', `${vendorClass} ${mode}`);
      assert.equal(p!.options.get(Opt.BOOTFILE)!.toString(), 'http://10.66.0.1:8080/tftp/ipxe.efi');
      assert.equal(p!.options.has(Opt.VENDOR_SPECIFIC), false, 'no PXE discovery options for HTTP boot');
    }
  }
  // No HTTP loader for ia32 (15) or arm64 (19) in this config: no answer rather than a wrong one.
  assert.equal(ask(decide, { arch: 15, vendorClass: 'PXEClient:Arch:00015:UNDI:003016' }).r.reason, 'decider_ignore');
  // A decision that names a TFTP path cannot be fetched by HTTP boot firmware: refused, with the reason.
  const tftpOnly: PxeDecider = () => ({ action: 'boot', bootFile: 'ipxe.efi', reason: 'test' });
  const { r, logs } = ask(tftpOnly, { arch: 19, vendorClass: 'PXEClient:Arch:00019:UNDI:003016' });
  assert.equal(r.out.length, 0);
  assert.equal(r.reason, 'not_servable');
  assert.ok(logs.some((l) => /needs a URL, but the boot file is ipxe\.efi/.test(String(l.why))));
});
