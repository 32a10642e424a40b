/**
 * `swarmboot demo`: creates a small content set for config/example.yaml so the daemon has something
 * real to serve on a fresh machine. Existing files are left alone. The WIM is built with wimtools'
 * wimcapture when it is installed (a real WIM); Windows boot files are stand-ins, since Microsoft's
 * cannot be shipped.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadConfig } from '../config/load.ts';

function put(path: string, text: string | Buffer): void {
  if (existsSync(path)) return;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

export async function createDemo(configFile: string): Promise<void> {
  const cfg = loadConfig(configFile);
  const pkg = (id: string) => cfg.packages[id]?.path;
  const say = (m: string) => process.stderr.write(`demo: ${m}\n`);

  const inf = (name: string, model: string) =>
    `; ${name}.inf: demo driver package for ${model}\n[Version]\nSignature="$WINDOWS NT$"\nClass=System\nProvider=%Demo%\nDriverVer=11/01/2026,1.0.0.0\n\n[Strings]\nDemo="swarmboot demo"\n`;
  const lat = pkg('drivers-latitude');
  if (lat) {
    put(join(lat, 'network', 'e1d.inf'), inf('e1d', 'Latitude 5440'));
    put(join(lat, 'storage', 'iastor.inf'), inf('iastor', 'Latitude 5440'));
  }
  const qemu = pkg('drivers-qemu');
  if (qemu) put(join(qemu, 'netkvm.inf'), inf('netkvm', 'QEMU'));
  const tools = pkg('agent-tools');
  if (tools) {
    put(join(tools, 'README.txt'), 'Tools copied to every machine by the lab-reimage sequence.\n');
    put(join(tools, 'bin', 'report.cmd'), '@echo off\r\necho reporting to %SWARMBOOT_URL%\r\n');
  }
  const office = pkg('office');
  if (office) put(office, 'Stand-in for an Office setup bundle.\n');

  const wim = pkg('win11-enterprise');
  if (wim && !existsSync(wim)) {
    const probe = spawnSync('wimcapture', ['--version'], { encoding: 'utf8' });
    if (probe.status === 0) {
      const src = mkdtempSync(join(tmpdir(), 'swarmboot-demo-'));
      try {
        put(join(src, 'Windows', 'System32', 'demo.txt'), 'A tiny stand-in Windows tree.\n');
        put(join(src, 'Users', 'Public', 'readme.txt'), 'Built by swarmboot demo with wimcapture.\n');
        mkdirSync(dirname(wim), { recursive: true });
        const r = spawnSync('wimcapture', [src, wim, 'Windows 11 Enterprise', 'Demo image', '--compress=none'], { encoding: 'utf8' });
        if (r.status !== 0) say(`wimcapture failed: ${r.stderr.trim()}`);
        else say(`built ${wim} with wimcapture`);
      } finally {
        rmSync(src, { recursive: true, force: true });
      }
    } else {
      say(`wimtools is not installed, so ${wim} was not built (apt-get install wimtools); the WIM package stays unavailable`);
    }
  }

  // TFTP root: iPXE from Debian's ipxe package when present, and WinPE stand-ins.
  const tftp = cfg.server.tftp.root;
  mkdirSync(tftp, { recursive: true });
  for (const [name, from] of Object.entries({ 'undionly.kpxe': '/usr/lib/ipxe/undionly.kpxe', 'ipxe.efi': '/usr/lib/ipxe/ipxe.efi', 'snponly.efi': '/usr/lib/ipxe/snponly.efi' })) {
    if (!existsSync(join(tftp, name)) && existsSync(from)) copyFileSync(from, join(tftp, name));
  }
  if (!existsSync(join(tftp, 'undionly.kpxe'))) say('Debian\'s ipxe package is not installed: no iPXE binaries in the TFTP root (apt-get install ipxe)');
  const standIn = (what: string) => `stand-in for ${what}: copy the real file from your Windows ADK / WinPE media\n`;
  put(join(tftp, 'winpe', 'bootmgr'), standIn('bootmgr'));
  put(join(tftp, 'winpe', 'bootmgr.efi'), standIn('bootmgr.efi'));
  put(join(tftp, 'winpe', 'Boot', 'BCD'), standIn('Boot\\BCD'));
  put(join(tftp, 'winpe', 'Boot', 'boot.sdi'), standIn('Boot\\boot.sdi'));
  put(join(tftp, 'winpe', 'sources', 'boot.wim'), standIn('sources\\boot.wim'));
  say(`content in ${cfg.server.contentDir}, TFTP root ${tftp}, state in ${cfg.server.dataDir}`);
}
