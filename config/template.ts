/**
 * swarmboot's variables in text: `{{ name }}`. Chosen over `${name}` because iPXE scripts, shells
 * and PowerShell all use `${…}` themselves, and their own variables must pass through untouched.
 */

const VAR = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Names used in a template, in order of first use. */
export function templateVariables(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(VAR)) out.add(m[1]!);
  return [...out];
}

/** Replace `{{ name }}` with its value; unknown names are left as written (config load already refused them). */
export function renderTemplate(text: string, vars: Readonly<Record<string, string | undefined>>): string {
  return text.replace(VAR, (whole, name: string) => vars[name] ?? whole);
}
