/**
 * A parsed YAML file that remembers where every value came from, so an error found in the data
 * (by the schema or by a cross-reference check) can be reported as file:line:column.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, type Document, type Node } from 'yaml';

export type PathSeg = string | number;

export interface Location {
  file: string;
  line: number;
  column: number;
}

export interface ConfigIssue extends Location {
  /** Dotted key path, e.g. `machines.hosts[3].mac`; empty for the document itself. */
  key: string;
  message: string;
}

export class YamlSource {
  readonly file: string;
  readonly text: string;
  readonly doc: Document.Parsed;
  private readonly lines: LineCounter;

  private constructor(file: string, text: string) {
    this.file = file;
    this.text = text;
    this.lines = new LineCounter();
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true, merge: false });
  }

  static read(file: string): YamlSource {
    return new YamlSource(file, readFileSync(file, 'utf8'));
  }

  static fromText(file: string, text: string): YamlSource {
    return new YamlSource(file, text);
  }

  /** YAML syntax errors (bad indentation, duplicate keys, tabs...) as issues. */
  syntaxIssues(): ConfigIssue[] {
    const dup = this.doc.errors.some((e) => e.code === 'DUPLICATE_KEY') ? this.duplicateKeys() : [];
    const rest = this.doc.errors.filter((e) => !(dup.length && e.code === 'DUPLICATE_KEY')).map((e) => {
      const pos = this.lines.linePos(e.pos[0]);
      const msg = e.message.split('\n')[0] ?? e.message;
      return { file: this.file, line: pos.line, column: pos.col, key: '', message: `YAML syntax: ${msg.replace(/ at line \d+, column \d+:?$/, '')}` };
    });
    return [...dup, ...rest];
  }

  /** yaml reports a duplicate key at its map; find each repeated key itself. */
  private duplicateKeys(): ConfigIssue[] {
    const lax = parseDocument(this.text, { uniqueKeys: false });
    const out: ConfigIssue[] = [];
    const walk = (node: unknown, path: PathSeg[]) => {
      if (isMap(node)) {
        const seen = new Map<string, number>();
        for (const item of node.items) {
          if (!isPair(item) || !isScalar(item.key)) continue;
          const k = String(item.key.value);
          const first = seen.get(k);
          if (first !== undefined) {
            const pos = this.lines.linePos(item.key.range?.[0] ?? 0);
            const was = this.lines.linePos(first);
            out.push({ file: this.file, line: pos.line, column: pos.col, key: formatPath([...path, k]), message: `YAML syntax: map keys must be unique; "${k}" is already set at line ${was.line}` });
          } else seen.set(k, item.key.range?.[0] ?? 0);
          walk(item.value, [...path, k]);
        }
      } else if (isSeq(node)) node.items.forEach((v, i) => walk(v, [...path, i]));
    };
    walk(lax.contents, []);
    return out;
  }

  /** The value at `path` was written as a plain (unquoted) number in the YAML source. */
  isPlainNumber(path: PathSeg[]): boolean {
    let node: unknown = this.doc.contents;
    for (const seg of path) {
      const next = child(node, seg);
      if (!next) return false;
      node = next.value;
    }
    return isScalar(node) && typeof node.value === 'number';
  }

  toJS(): unknown {
    return this.doc.toJS({ maxAliasCount: 100 });
  }

  /**
   * Where the value at `path` is written. With `keyOf`, where the key `keyOf` inside the map at
   * `path` is written (for "unknown key" errors). Falls back to the nearest parent that exists.
   */
  locate(path: PathSeg[], keyOf?: string): Location {
    let node: unknown = this.doc.contents;
    let best: Node | null = isNodeLike(node) ? node : null;
    for (const seg of path) {
      const next = child(node, seg);
      if (next === undefined) break;
      node = next.value;
      const at = next.key ?? next.value;
      best = isNodeLike(next.value) ? next.value : isNodeLike(at) ? at : best;
    }
    if (keyOf !== undefined && isMap(node)) {
      for (const item of node.items) {
        if (isPair(item) && isScalar(item.key) && String(item.key.value) === keyOf) {
          best = item.key;
          break;
        }
      }
    }
    const offset = best?.range?.[0] ?? 0;
    const pos = this.lines.linePos(offset);
    return { file: this.file, line: pos.line, column: pos.col };
  }
}

function isNodeLike(x: unknown): x is Node {
  return typeof x === 'object' && x !== null && 'range' in x && Array.isArray((x as Node).range);
}

function child(node: unknown, seg: PathSeg): { key?: Node; value: unknown } | undefined {
  if (isMap(node)) {
    for (const item of node.items) {
      if (isPair(item) && isScalar(item.key) && String(item.key.value) === String(seg)) {
        return { key: item.key, value: item.value ?? item.key };
      }
    }
    return undefined;
  }
  if (isSeq(node) && typeof seg === 'number') {
    const v = node.items[seg];
    return v === undefined ? undefined : { value: v };
  }
  return undefined;
}

/** `['machines','hosts',3,'mac']` → `machines.hosts[3].mac` */
export function formatPath(path: PathSeg[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.key ? `${i.key}: ` : ''}${i.message}`;
}
