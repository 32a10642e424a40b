/**
 * A small, strict-enough XML reader for the WIM XML resource: elements, attributes, text, CDATA,
 * comments, processing instructions and the five named entities plus numeric ones. No DTDs, no
 * namespaces: WIM XML uses none, and refusing them keeps the reader small and safe.
 */

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** Concatenated text directly inside this element. */
  text: string;
}

export class XmlError extends Error {
  override readonly name = 'XmlError';
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const ATTR = /\s+([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*("([^"]*)"|'([^']*)')/y;

export function parseXml(src: string): XmlElement {
  const root: XmlElement = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: XmlElement[] = [root];
  let i = 0;
  const top = (): XmlElement => stack[stack.length - 1]!;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    if (lt < 0) {
      top().text += decodeEntities(src.slice(i));
      break;
    }
    if (lt > i) top().text += decodeEntities(src.slice(i, lt));
    if (src.startsWith('<!--', lt)) {
      const end = src.indexOf('-->', lt + 4);
      if (end < 0) throw new XmlError('unterminated comment');
      i = end + 3;
    } else if (src.startsWith('<?', lt)) {
      const end = src.indexOf('?>', lt + 2);
      if (end < 0) throw new XmlError('unterminated processing instruction');
      i = end + 2;
    } else if (src.startsWith('<![CDATA[', lt)) {
      const end = src.indexOf(']]>', lt + 9);
      if (end < 0) throw new XmlError('unterminated CDATA');
      top().text += src.slice(lt + 9, end);
      i = end + 3;
    } else if (src.startsWith('<!', lt)) {
      throw new XmlError('DTDs are not supported');
    } else if (src[lt + 1] === '/') {
      NAME.lastIndex = lt + 2;
      const m = NAME.exec(src);
      if (!m) throw new XmlError(`bad closing tag at ${lt}`);
      const el = stack.pop();
      if (!el || el === root || el.name !== m[0]) throw new XmlError(`unexpected </${m[0]}> at ${lt}`);
      const gt = src.indexOf('>', NAME.lastIndex);
      if (gt < 0 || src.slice(NAME.lastIndex, gt).trim() !== '') throw new XmlError(`bad closing tag at ${lt}`);
      i = gt + 1;
    } else {
      NAME.lastIndex = lt + 1;
      const m = NAME.exec(src);
      if (!m) throw new XmlError(`bad tag at ${lt}`);
      const el: XmlElement = { name: m[0], attrs: {}, children: [], text: '' };
      let j = NAME.lastIndex;
      for (;;) {
        ATTR.lastIndex = j;
        const a = ATTR.exec(src);
        if (!a) break;
        el.attrs[a[1]!] = decodeEntities(a[3] ?? a[4] ?? '');
        j = ATTR.lastIndex;
      }
      while (j < src.length && /\s/.test(src[j]!)) j++;
      top().children.push(el);
      if (src.startsWith('/>', j)) {
        i = j + 2;
      } else if (src[j] === '>') {
        stack.push(el);
        i = j + 1;
      } else {
        throw new XmlError(`bad tag <${el.name}> at ${lt}`);
      }
    }
  }
  if (stack.length !== 1) throw new XmlError(`unclosed <${top().name}>`);
  const docEl = root.children[0];
  if (!docEl || root.children.length !== 1) throw new XmlError('expected exactly one root element');
  return docEl;
}

function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);/g, (_, e: string) => {
    switch (e) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : '\uFFFD';
  });
}

/** First child element with this name (case-sensitive, as WIM XML is upper-case). */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

/** Trimmed text of a child, or undefined when absent or empty. */
export function childText(el: XmlElement | undefined, name: string): string | undefined {
  const t = child(el, name)?.text.trim();
  return t === undefined || t === '' ? undefined : t;
}
