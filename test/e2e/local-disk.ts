/**
 * A stand-in for a machine's local disk, for the "finished machine boots its disk" tests: a
 * program that prints a marker on the serial port and then ends QEMU through the isa-debug-exit
 * device, so reaching the disk is both visible (the marker) and exact (QEMU's exit code).
 *
 * - BIOS: a 512-byte MBR (16-bit real mode), what `sanboot --drive 0x80` or the BIOS boot order jumps to.
 * - UEFI: a minimal PE32+ EFI application (x86-64, one section, no relocations needed: the code
 *   only uses RIP-relative addressing and port I/O), placed as `\EFI\BOOT\BOOTX64.EFI` on a FAT
 *   disk QEMU builds from a folder (`fat:` drive), which OVMF boots as the disk's boot option.
 * Both are assembled here byte by byte: no toolchain is needed, and nothing else could print this
 * marker, so its presence proves the firmware reached the disk.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const LOCAL_DISK_MARKER = 'SWARMBOOT-LOCAL-DISK';
/** Value written to the isa-debug-exit port; QEMU exits with (value << 1) | 1. */
const EXIT_VALUE = 0x10;
export const LOCAL_DISK_EXIT_CODE = (EXIT_VALUE << 1) | 1;
const DEBUG_EXIT_PORT = 0xf4;
/** QEMU arguments for the exit device the disk programs write to. */
export const DEBUG_EXIT_ARGS = ['-device', `isa-debug-exit,iobase=0x${DEBUG_EXIT_PORT.toString(16)},iosize=0x04`];

/**
 * The shared body: print the NUL-terminated string at [(r|e)si] on COM1 (waiting for the
 * transmitter to be empty before each byte), then write EXIT_VALUE to the debug-exit port and halt.
 * `wide` adds the operand-size prefix 16-bit `mov dx, imm16` needs in 64-bit mode.
 */
function printAndExit(wide: boolean): number[] {
  const movDx = (port: number) => [...(wide ? [0x66] : []), 0xba, port & 0xff, port >> 8];
  const code: number[] = [];
  const loop = code.length;
  code.push(0xac); // lodsb
  code.push(0x84, 0xc0); // test al, al
  const jzDone = code.length;
  code.push(0x74, 0x00); // jz done (patched)
  code.push(0x88, 0xc4); // mov ah, al
  code.push(...movDx(0x3fd)); // mov dx, LSR
  const wait = code.length;
  code.push(0xec); // in al, dx
  code.push(0xa8, 0x20); // test al, THRE
  code.push(0x74, (wait - (code.length + 2)) & 0xff); // jz wait
  code.push(...movDx(0x3f8)); // mov dx, THR
  code.push(0x88, 0xe0); // mov al, ah
  code.push(0xee); // out dx, al
  code.push(0xeb, (loop - (code.length + 2)) & 0xff); // jmp loop
  const done = code.length;
  code[jzDone + 1] = done - (jzDone + 2);
  code.push(...movDx(DEBUG_EXIT_PORT));
  code.push(0xb0, EXIT_VALUE); // mov al, EXIT_VALUE
  code.push(0xee); // out dx, al
  const hlt = code.length;
  code.push(0xf4); // hlt
  code.push(0xeb, (hlt - (code.length + 2)) & 0xff); // jmp hlt
  return code;
}

const message = (firmware: string) => Buffer.from(`\r\n${LOCAL_DISK_MARKER} ${firmware}\r\n\0`, 'latin1');

/** A BIOS boot sector: loaded at 0000:7C00 in real mode. */
export function biosBootSector(): Buffer {
  const head = [0xfa, 0xfc, 0x31, 0xc0, 0x8e, 0xd8]; // cli; cld; xor ax, ax; mov ds, ax
  const movSi = 3; // mov si, imm16
  const body = printAndExit(false);
  const msgOffset = head.length + movSi + body.length;
  const code = Buffer.from([...head, 0xbe, (0x7c00 + msgOffset) & 0xff, (0x7c00 + msgOffset) >> 8, ...body]);
  const sector = Buffer.alloc(512);
  code.copy(sector, 0);
  message('bios').copy(sector, msgOffset);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** A PE32+ EFI application (subsystem 10) whose entry point runs printAndExit. */
export function efiApplication(): Buffer {
  const FILE_ALIGN = 0x200;
  const SECTION_RVA = 0x1000;
  const head = [0xfc]; // cld
  const leaLen = 7; // lea rsi, [rip + disp32]
  const body = printAndExit(true);
  const msgOffset = head.length + leaLen + body.length;
  const disp = msgOffset - (head.length + leaLen);
  const lea = Buffer.alloc(leaLen);
  lea.set([0x48, 0x8d, 0x35]);
  lea.writeInt32LE(disp, 3);
  const text = Buffer.concat([Buffer.from(head), lea, Buffer.from(body), message('uefi')]);
  const rawSize = Math.ceil(text.length / FILE_ALIGN) * FILE_ALIGN;

  const img = Buffer.alloc(FILE_ALIGN + rawSize);
  // DOS header: "MZ", e_lfanew at 0x3c.
  img.write('MZ', 0, 'latin1');
  const pe = 0x40;
  img.writeUInt32LE(pe, 0x3c);
  img.write('PE\0\0', pe, 'latin1');
  // COFF file header.
  const coff = pe + 4;
  img.writeUInt16LE(0x8664, coff); // Machine: x86-64
  img.writeUInt16LE(1, coff + 2); // NumberOfSections
  img.writeUInt16LE(240, coff + 16); // SizeOfOptionalHeader (PE32+)
  img.writeUInt16LE(0x0022, coff + 18); // EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE (relocations not stripped: none are needed)
  // Optional header (PE32+).
  const opt = coff + 20;
  img.writeUInt16LE(0x20b, opt); // Magic
  img.writeUInt32LE(rawSize, opt + 4); // SizeOfCode
  img.writeUInt32LE(SECTION_RVA, opt + 16); // AddressOfEntryPoint
  img.writeUInt32LE(SECTION_RVA, opt + 20); // BaseOfCode
  img.writeBigUInt64LE(0x10000000n, opt + 24); // ImageBase
  img.writeUInt32LE(0x1000, opt + 32); // SectionAlignment
  img.writeUInt32LE(FILE_ALIGN, opt + 36); // FileAlignment
  img.writeUInt32LE(SECTION_RVA + Math.ceil(rawSize / 0x1000) * 0x1000, opt + 56); // SizeOfImage
  img.writeUInt32LE(FILE_ALIGN, opt + 60); // SizeOfHeaders
  img.writeUInt16LE(10, opt + 68); // Subsystem: EFI application
  img.writeBigUInt64LE(0x10000n, opt + 72); // SizeOfStackReserve
  img.writeBigUInt64LE(0x10000n, opt + 80); // SizeOfStackCommit
  img.writeUInt32LE(16, opt + 108); // NumberOfRvaAndSizes (all empty)
  // Section header: .text, code + data, executable.
  const sec = opt + 240;
  img.write('.text', sec, 'latin1');
  img.writeUInt32LE(text.length, sec + 8); // VirtualSize
  img.writeUInt32LE(SECTION_RVA, sec + 12); // VirtualAddress
  img.writeUInt32LE(rawSize, sec + 16); // SizeOfRawData
  img.writeUInt32LE(FILE_ALIGN, sec + 20); // PointerToRawData
  img.writeUInt32LE(0x60000020, sec + 36); // CODE | EXECUTE | READ
  text.copy(img, FILE_ALIGN);
  return img;
}

/**
 * Write the local-disk stand-ins under `dir`: `bios-disk.img` (a one-sector raw disk) and
 * `uefi-esp/EFI/BOOT/BOOTX64.EFI` (a folder QEMU turns into a FAT disk). Returns QEMU arguments
 * that attach each as the VM's disk.
 * - bios: BIOS drive 0x80, but not in SeaBIOS's boot order (`strict=on`, no bootindex): only
 *   iPXE's `sanboot` can reach it, so the marker proves sanboot ran (an `exit` finds nothing).
 * - uefi: after the network in the boot order (bootindex 1), as on a machine set to "network,
 *   then disk": iPXE's `exit` must hand the machine back to the firmware, which goes on to it.
 */
export function writeLocalDisk(dir: string): { bios: string[]; uefi: string[] } {
  mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'bios-disk.img');
  // A whole cylinder (63 sectors), so BIOSes see a sane geometry.
  const disk = Buffer.alloc(512 * 63);
  biosBootSector().copy(disk, 0);
  writeFileSync(img, disk);
  const esp = path.join(dir, 'uefi-esp');
  mkdirSync(path.join(esp, 'EFI', 'BOOT'), { recursive: true });
  writeFileSync(path.join(esp, 'EFI', 'BOOT', 'BOOTX64.EFI'), efiApplication());
  return {
    // ide-hd cannot be read-only: snapshot=on keeps writes (there are none) out of the file.
    bios: ['-drive', `if=none,id=disk0,format=raw,snapshot=on,file=${img}`, '-device', 'ide-hd,drive=disk0,bus=ide.0', '-boot', 'strict=on', ...DEBUG_EXIT_ARGS],
    uefi: ['-drive', `if=none,id=disk0,format=raw,readonly=on,file=fat:${esp}`, '-device', 'virtio-blk-pci,drive=disk0,bootindex=1', ...DEBUG_EXIT_ARGS],
  };
}
