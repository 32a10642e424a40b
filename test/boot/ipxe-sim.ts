/**
 * A model of iPXE's script control flow, for testing generated scripts by running them: labels,
 * `goto` (which ends the line), `&&` / `||` chains (iPXE's exec.c: `a && b` runs b only when a
 * succeeded, `a || b` only when a failed; an empty command after a trailing `||` succeeds), a line
 * that still fails ends the script (script.c), `exit [N]`, `iseq`, `set` / `inc` and `${var}`.
 * Every other command (kernel, initrd, boot, sanboot, chain, imgfree, echo, sleep, menu, item,
 * choose) is recorded and succeeds or fails as the test's `world` says.
 */
export interface World {
  /** iPXE's `${platform}`: `pcbios` or `efi`. */
  platform: 'pcbios' | 'efi';
  /** Exit status of a command line (after variable expansion); default 0 (success). */
  status?: (cmd: string, attempt: number) => number;
  /** Menu choices, in order; `choose` fails (as on Escape) when none are left. */
  choices?: string[];
}

export type Ending =
  | { how: 'exit'; code: number }
  | { how: 'booted'; by: string }
  | { how: 'failed'; line: string; code: number }
  | { how: 'end' }
  | { how: 'loop' };

export interface Run {
  ending: Ending;
  /** Every command that ran, variables expanded (labels and comments are not commands). */
  trace: string[];
}

/** Commands that, when they succeed, hand the machine to something else: the script is over. */
const HANDS_OFF = /^(boot|sanboot|chain)\b/;

export function runIpxe(script: string, world: World, maxSteps = 10_000): Run {
  const lines = script.split('\n');
  if (lines[0] !== '#!ipxe') throw new Error('not an iPXE script');
  const labels = new Map<string, number>();
  lines.forEach((l, i) => {
    const m = /^:(\S+)$/.exec(l.trim());
    if (m) {
      if (labels.has(m[1]!)) throw new Error(`label ${m[1]} defined twice`);
      labels.set(m[1]!, i);
    }
  });
  const vars = new Map<string, string>([['platform', world.platform]]);
  const attempts = new Map<string, number>();
  const choices = [...(world.choices ?? [])];
  const trace: string[] = [];
  const expand = (t: string) => t.replace(/\$\{([^}:]+)(?::[a-z0-9]+)?\}/g, (_m, n: string) => vars.get(n) ?? '');

  let pc = 1;
  for (let steps = 0; steps < maxSteps; steps++) {
    if (pc >= lines.length) return { ending: { how: 'end' }, trace };
    const raw = lines[pc]!.trim();
    pc++;
    if (!raw || raw.startsWith('#') || raw.startsWith(':')) continue;
    // Split into commands and the operators between them.
    const tokens = raw.split(/\s+/);
    const cmds: Array<{ words: string[]; op?: '&&' | '||' }> = [{ words: [] }];
    for (const t of tokens) {
      if (t === '&&' || t === '||') {
        cmds[cmds.length - 1]!.op = t;
        cmds.push({ words: [] });
      } else cmds[cmds.length - 1]!.words.push(t);
    }
    let rc = 0;
    let run = true;
    let jumped = false;
    for (const c of cmds) {
      if (run) {
        const words = c.words.map(expand);
        const cmd = words.join(' ');
        if (words.length === 0) rc = 0;
        else {
          trace.push(cmd);
          const [name, ...args] = words;
          switch (name) {
            case 'goto': {
              const target = labels.get(args[0]!);
              if (target === undefined) return { ending: { how: 'failed', line: raw, code: 2 }, trace };
              pc = target + 1;
              jumped = true;
              rc = 0;
              break;
            }
            case 'exit':
              return { ending: { how: 'exit', code: Number(args[0] ?? 0) }, trace };
            case 'iseq':
              rc = args[0] === args[1] ? 0 : 1;
              break;
            case 'set':
              vars.set(args[0]!.replace(/:.*$/, ''), args.slice(1).join(' '));
              rc = 0;
              break;
            case 'inc':
              vars.set(args[0]!, String(Number(vars.get(args[0]!) ?? 0) + Number(args[1] ?? 1)));
              rc = 0;
              break;
            case 'choose': {
              const pick = choices.shift();
              if (pick === undefined) return { ending: { how: 'loop' }, trace };
              vars.set(args[args.length - 1]!, pick);
              rc = 0;
              break;
            }
            default: {
              const n = (attempts.get(cmd) ?? 0) + 1;
              attempts.set(cmd, n);
              rc = world.status?.(cmd, n) ?? 0;
              if (rc === 0 && HANDS_OFF.test(cmd)) return { ending: { how: 'booted', by: cmd }, trace };
            }
          }
        }
        if (jumped) break;
      }
      run = c.op === '&&' ? rc === 0 : c.op === '||' ? rc !== 0 : false;
    }
    if (!jumped && rc !== 0) return { ending: { how: 'failed', line: raw, code: rc }, trace };
  }
  return { ending: { how: 'loop' }, trace };
}
