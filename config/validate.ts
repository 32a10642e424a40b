/**
 * Schema validation with errors a person can act on: each names the file, line, column, the key and
 * what was expected. Ajv reports every branch of a union; for unions told apart by `type` we keep
 * only the branch the admin meant, and for other unions one sentence saying what is allowed.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { TSchema } from 'typebox';
import { formatPath, type ConfigIssue, type PathSeg, type YamlSource } from './yaml-source.ts';

// ajv-formats is CommonJS with a default export.
const addFormats = (addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule;

const cache = new WeakMap<TSchema, ValidateFunction>();

function compile(schema: TSchema): ValidateFunction {
  let fn = cache.get(schema);
  if (!fn) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: false });
    (addFormats as unknown as (a: Ajv, f: string[]) => void)(ajv, ['ipv4']);
    fn = ajv.compile(schema);
    cache.set(schema, fn);
  }
  return fn;
}

/** Validate `data` (parsed from `src`) against `schema`; returns issues with source locations. */
export function validateAgainst(schema: TSchema, data: unknown, src: YamlSource): ConfigIssue[] {
  return validateDetailed(schema, data, src).issues;
}

/** Where validation failed: `unknownKey` marks a key that is not allowed (the value around it is fine). */
export interface InvalidAt {
  path: PathSeg[];
  unknownKey: boolean;
}

/**
 * Validate and also say where each problem is as a data path, so the loader can set the invalid
 * parts aside and go on checking the rest: `check-config` then reports every problem in one run.
 */
export function validateDetailed(schema: TSchema, data: unknown, src: YamlSource): { issues: ConfigIssue[]; invalid: InvalidAt[] } {
  const fn = compile(schema);
  if (fn(data)) return { issues: [], invalid: [] };
  const errors = simplify([...(fn.errors ?? [])], data);
  const seen = new Set<string>();
  const out: ConfigIssue[] = [];
  const invalid: InvalidAt[] = [];
  for (const e of errors) {
    const path = pathOf(e.instancePath);
    if (e.keyword === 'additionalProperties') invalid.push({ path: [...path, String((e.params as { additionalProperty: unknown }).additionalProperty)], unknownKey: true });
    else invalid.push({ path, unknownKey: false });
    const issue = toIssue(e, src);
    const k = `${issue.line}:${issue.column}:${issue.key}:${issue.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(issue);
  }
  return { issues: out.sort((a, b) => a.line - b.line || a.column - b.column), invalid };
}

function pathOf(instancePath: string): PathSeg[] {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function valueAt(data: unknown, path: PathSeg[]): unknown {
  let v: unknown = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[seg as string];
  }
  return v;
}

interface Branch {
  properties?: Record<string, { const?: unknown }>;
  const?: unknown;
  description?: string;
}

/** Collapse union (anyOf) error trees into the errors the admin needs to see. */
function simplify(errors: ErrorObject[], data: unknown): ErrorObject[] {
  let errs = errors;
  const unions = errs.filter((e) => e.keyword === 'anyOf').sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const u of unions) {
    if (!errs.includes(u)) continue;
    const prefix = `${u.schemaPath}/`;
    const branches = (Array.isArray(u.schema) ? u.schema : []) as Branch[];
    // The same schema path recurs for every item of a list: match the instance too.
    const under = (e: ErrorObject) => e.instancePath === u.instancePath || e.instancePath.startsWith(`${u.instancePath}/`);
    const inBranch = (e: ErrorObject, i: number) => under(e) && e.schemaPath.startsWith(`${prefix}${i}/`);
    const anyBranch = (e: ErrorObject) => under(e) && e.schemaPath.startsWith(prefix);
    const tags = branches.map((b) => b.properties?.type?.const);
    const instance = valueAt(data, pathOf(u.instancePath));
    const discriminated = tags.length > 0 && tags.every((t) => typeof t === 'string');

    if (discriminated && instance !== null && typeof instance === 'object' && !Array.isArray(instance)) {
      const typeErrPath = `${u.instancePath}/type`;
      const candidates = branches
        .map((_, i) => i)
        .filter((i) => !errs.some((e) => inBranch(e, i) && ((e.instancePath === typeErrPath && e.keyword === 'const') || (e.instancePath === u.instancePath && e.keyword === 'required' && (e.params as { missingProperty?: string }).missingProperty === 'type'))));
      if (candidates.length === 1) {
        const keep = candidates[0]!;
        errs = errs.filter((e) => e !== u && (!anyBranch(e) || inBranch(e, keep)));
        continue;
      }
      const hasType = 'type' in (instance as object);
      errs = errs.filter((e) => e !== u && !anyBranch(e));
      errs.push({
        ...u,
        keyword: 'discriminator',
        instancePath: hasType ? typeErrPath : u.instancePath,
        message: hasType
          ? `unknown type; expected one of: ${tags.join(', ')}`
          : `needs a "type": one of ${tags.join(', ')}`,
      });
      continue;
    }

    errs = errs.filter((e) => !anyBranch(e));
    const consts = branches.map((b) => b.const);
    const described = (u.parentSchema as { description?: string } | undefined)?.description;
    if (consts.every((c) => c !== undefined)) u.message = `must be one of: ${consts.map((c) => JSON.stringify(c)).join(', ')}`;
    else if (described) u.message = `must be ${described}`;
    else if (discriminated) u.message = 'must be a mapping with a "type" key';
    else u.message = `must be one of: ${branches.map(describeBranch).join(' | ')}`;
  }
  return errs;
}

function describeBranch(b: unknown): string {
  const s = b as { type?: string; const?: unknown; description?: string };
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.description) return s.description;
  return s.type ?? 'value';
}

const typeNames: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'null',
};

function toIssue(e: ErrorObject, src: YamlSource): ConfigIssue {
  const path = pathOf(e.instancePath);
  const params = e.params as Record<string, unknown>;
  const description = (e.parentSchema as { description?: string } | undefined)?.description;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const hint = suggest(key, allowed);
      return {
        ...src.locate(path, key),
        key: formatPath([...path, key]),
        message: `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}${allowed.length ? `; allowed here: ${allowed.join(', ')}` : ''}`,
      };
    }
    case 'required': {
      const missing = String(params.missingProperty);
      return { ...src.locate(path), key: formatPath([...path, missing]), message: `missing required key "${missing}"` };
    }
    case 'type': {
      const t = String(params.type);
      const quote = t === 'string' && src.isPlainNumber(path) ? ' (YAML read this as a number: put it in quotes)' : '';
      const what = t === 'string' && description ? description : t.split(',').map((x) => typeNames[x] ?? x).join(' or ');
      return { ...src.locate(path), key: formatPath(path), message: `must be ${what}${quote}` };
    }
    case 'pattern':
    case 'format':
      return {
        ...src.locate(path),
        key: formatPath(path),
        message: description ? `must be ${description}` : e.keyword === 'format' ? `must be a valid ${String(params.format)} address` : `${e.message}`,
      };
    case 'propertyNames':
      return { ...src.locate(path), key: formatPath(path), message: `has an invalid key name: ${e.message ?? ''}` };
    default: {
      // propertyNames errors are reported on the offending key by ajv as a pattern error with propertyName.
      const propertyName = params.propertyName as string | undefined;
      if (propertyName !== undefined) {
        return { ...src.locate(path, propertyName), key: formatPath([...path, propertyName]), message: `invalid name "${propertyName}": ${e.message ?? ''}` };
      }
      return { ...src.locate(path), key: formatPath(path), message: e.message ?? 'is invalid' };
    }
  }
}

/** The allowed key closest to a misspelt one, when it is close enough to be a typo. */
function suggest(key: string, allowed: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const a of allowed) {
    const d = distance(key.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = a;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}
