/**
 * Reads a WIM's image list without external tools: the 208-byte header, then the XML resource it
 * points at (UTF-16LE, stored uncompressed by both WIMGAPI and wimlib). Layout follows wimlib's
 * `include/wimlib/header.h` and the XML that DISM and `wiminfo` display.
 */
import { open } from 'node:fs/promises';
import type { WimImage, WimInfo } from './types.ts';
import { child, childText, parseXml, type XmlElement } from './xml.ts';

const HEADER_SIZE = 208;
const MAGIC = 'MSWIM\0\0\0';
const PIPABLE_MAGIC = 'WLPWM\0\0\0';
const MAX_XML = 64 << 20;

const RESHDR_COMPRESSED = 0x04;

const COMPRESSION: Array<[number, WimInfo['compression']]> = [
  [0x00020000, 'xpress'],
  [0x00200000, 'xpress'],
  [0x00040000, 'lzx'],
  [0x00080000, 'lzms'],
];

const ARCH: Record<string, string> = { '0': 'x86', '5': 'arm', '6': 'ia64', '9': 'x64', '12': 'arm64' };

export class WimError extends Error {
  override readonly name = 'WimError';
}

/** Header and image list of the WIM (or ESD, or first part of a split WIM) at `path`. */
export async function readWimInfo(path: string): Promise<WimInfo> {
  const fh = await open(path, 'r');
  try {
    const hdr = Buffer.alloc(HEADER_SIZE);
    const { bytesRead } = await fh.read(hdr, 0, HEADER_SIZE, 0);
    if (bytesRead < HEADER_SIZE) throw new WimError('too short to be a WIM file');
    const magic = hdr.toString('latin1', 0, 8);
    if (magic !== MAGIC && magic !== PIPABLE_MAGIC) throw new WimError('not a WIM file (bad magic)');
    const hdrSize = hdr.readUInt32LE(8);
    if (hdrSize !== HEADER_SIZE) throw new WimError(`unsupported WIM header size ${hdrSize}`);
    const version = hdr.readUInt32LE(12);
    const flags = hdr.readUInt32LE(16);
    const chunkSize = hdr.readUInt32LE(20);
    const guid = hdr.subarray(24, 40).toString('hex');
    const partNumber = hdr.readUInt16LE(40);
    const totalParts = hdr.readUInt16LE(42);
    const imageCount = hdr.readUInt32LE(44);
    const xml = readResHdr(hdr, 72);
    const bootIndex = hdr.readUInt32LE(120);

    if (xml.offset === 0 || xml.originalSize === 0) throw new WimError('WIM has no XML data (unfinished or streamed WIM)');
    if (xml.flags & RESHDR_COMPRESSED) throw new WimError('compressed WIM XML data is not supported');
    if (xml.originalSize > MAX_XML) throw new WimError(`WIM XML data too large (${xml.originalSize} bytes)`);
    const st = await fh.stat();
    if (xml.offset + xml.originalSize > st.size) throw new WimError('WIM XML data lies past the end of the file (truncated?)');

    const raw = Buffer.alloc(xml.originalSize);
    await fh.read(raw, 0, raw.length, xml.offset);
    const images = parseWimXml(decodeXmlText(raw));
    if (images.length !== imageCount) {
      throw new WimError(`WIM header says ${imageCount} image(s) but its XML lists ${images.length}`);
    }
    let compression: WimInfo['compression'] = 'none';
    if (flags & 0x2) compression = COMPRESSION.find(([bit]) => flags & bit)?.[1] ?? 'unknown';
    return {
      version,
      flags,
      compression,
      chunkSize,
      guid,
      partNumber,
      totalParts,
      bootIndex,
      images,
    };
  } finally {
    await fh.close();
  }
}

interface ResHdr {
  sizeInWim: number;
  flags: number;
  offset: number;
  originalSize: number;
}

function readResHdr(b: Buffer, at: number): ResHdr {
  const sizeAndFlags = b.readBigUInt64LE(at);
  return {
    sizeInWim: Number(sizeAndFlags & 0x00ff_ffff_ffff_ffffn),
    flags: Number(sizeAndFlags >> 56n),
    offset: safeNumber(b.readBigUInt64LE(at + 8)),
    originalSize: safeNumber(b.readBigUInt64LE(at + 16)),
  };
}

function safeNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WimError('WIM header offset out of range');
  return Number(v);
}

/** WIM XML is UTF-16LE with a BOM; tolerate UTF-8 for hand-made test files. */
function decodeXmlText(raw: Buffer): string {
  if (raw.length >= 2 && raw[0] === 0xff && raw[1] === 0xfe) return raw.toString('utf16le', 2);
  if (raw.length >= 2 && raw[0] === 0x3c && raw[1] === 0x00) return raw.toString('utf16le');
  const s = raw.toString('utf8');
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

/** The `<IMAGE>` elements of a WIM XML document, in index order. */
export function parseWimXml(text: string): WimImage[] {
  let doc: XmlElement;
  try {
    doc = parseXml(text.replace(/\0+$/, ''));
  } catch (e) {
    throw new WimError(`WIM XML data is malformed: ${(e as Error).message}`);
  }
  if (doc.name !== 'WIM') throw new WimError(`WIM XML root is <${doc.name}>, expected <WIM>`);
  const images: WimImage[] = [];
  for (const el of doc.children) {
    if (el.name !== 'IMAGE') continue;
    const index = Number(el.attrs.INDEX);
    if (!Number.isInteger(index) || index < 1) throw new WimError(`WIM XML has an <IMAGE> with a bad INDEX "${el.attrs.INDEX ?? ''}"`);
    const win = child(el, 'WINDOWS');
    const ver = child(win, 'VERSION');
    const langs = child(win, 'LANGUAGES');
    const img: WimImage = {
      index,
      name: childText(el, 'NAME') ?? '',
      totalBytes: num(childText(el, 'TOTALBYTES')) ?? 0,
    };
    setIf(img, 'description', childText(el, 'DESCRIPTION'));
    setIf(img, 'displayName', childText(el, 'DISPLAYNAME'));
    setIf(img, 'edition', childText(win, 'EDITIONID'));
    setIf(img, 'flags', childText(el, 'FLAGS'));
    setIf(img, 'dirCount', num(childText(el, 'DIRCOUNT')));
    setIf(img, 'fileCount', num(childText(el, 'FILECOUNT')));
    const arch = childText(win, 'ARCH');
    setIf(img, 'arch', arch === undefined ? undefined : (ARCH[arch] ?? `arch-${arch}`));
    if (ver) {
      const parts = ['MAJOR', 'MINOR', 'BUILD', 'SPBUILD'].map((k) => childText(ver, k) ?? '0');
      img.windowsVersion = parts.join('.');
    }
    if (langs) {
      const list = langs.children.filter((c) => c.name === 'LANGUAGE').map((c) => c.text.trim()).filter(Boolean);
      if (list.length) img.languages = list;
    }
    setIf(img, 'created', fileTime(child(el, 'CREATIONTIME')));
    images.push(img);
  }
  images.sort((a, b) => a.index - b.index);
  images.forEach((img, i) => {
    if (img.index !== i + 1) throw new WimError(`WIM XML image indexes are not 1..${images.length}`);
  });
  return images;
}

function setIf<K extends keyof WimImage>(img: WimImage, key: K, v: WimImage[K] | undefined): void {
  if (v !== undefined) img[key] = v;
}

/** WIM XML numbers are decimal, or hex with 0x (wimlib writes decimal, WIMGAPI hex in FILETIMEs). */
function num(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = /^0x/i.test(s) ? parseInt(s, 16) : Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/** `<CREATIONTIME><HIGHPART>0x…</HIGHPART><LOWPART>0x…</LOWPART>` (a FILETIME) to ISO. */
function fileTime(el: XmlElement | undefined): string | undefined {
  const hi = childText(el, 'HIGHPART');
  const lo = childText(el, 'LOWPART');
  if (hi === undefined || lo === undefined) return undefined;
  try {
    const ft = (BigInt(hi) << 32n) | BigInt(lo);
    const ms = Number(ft / 10_000n) - 11_644_473_600_000;
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
  } catch {
    return undefined;
  }
}

/**
 * The image a step names, by 1-based index (a number, or a string of digits that is no image's
 * name) or by name (exact first, then ignoring case and extra whitespace). The error lists what
 * the WIM does contain, so the admin can fix the config at once.
 */
export function selectImage(images: readonly WimImage[], ref: number | string, what = 'the WIM'): WimImage {
  const list = (): string => (images.length ? images.map((i) => `${i.index} "${i.name}"`).join(', ') : 'no images');
  if (typeof ref === 'number') {
    const img = Number.isInteger(ref) ? images.find((i) => i.index === ref) : undefined;
    if (!img) throw new WimError(`${what} has no image with index ${ref}; it has ${list()}`);
    return img;
  }
  const want = ref.trim();
  const exact = images.filter((i) => i.name === want);
  if (exact.length === 1) return exact[0]!;
  const fold = (s: string): string => s.normalize('NFKC').trim().replace(/\s+/gu, ' ').toLowerCase();
  const loose = exact.length ? exact : images.filter((i) => fold(i.name) === fold(want));
  if (loose.length === 1) return loose[0]!;
  if (loose.length > 1) {
    throw new WimError(`${what} has ${loose.length} images named "${want}" (indexes ${loose.map((i) => i.index).join(', ')}); name one by index`);
  }
  if (/^\d+$/.test(want)) return selectImage(images, Number(want), what);
  throw new WimError(`${what} has no image named "${want}"; it has ${list()}`);
}
