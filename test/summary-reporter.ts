/**
 * A node:test reporter that ends the run with the plain line CI reads in any language:
 * `N passed, N failed, N skipped`. Runs beside the spec reporter.
 */
interface TestEvent {
  type: string;
  data: { details?: { type?: string }; skip?: unknown; todo?: unknown; nesting?: number };
}

export default async function* summary(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for await (const ev of source) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    if (ev.data.details?.type === 'suite') continue;
    if (ev.data.skip || ev.data.todo) skipped++;
    else if (ev.type === 'test:pass') passed++;
    else failed++;
  }
  yield `\n${passed} passed, ${failed} failed, ${skipped} skipped\n`;
}
