/**
 * The content store inside the daemon: scans packages in the background at start (DHCP, TFTP and
 * HTTP answer meanwhile; sequences that need unscanned content get a clear 503), rescans when the
 * config's packages change, and swaps catalogues atomically. Progress goes to the log.
 */
import type { Logger } from 'pino';
import type { DatabaseSync } from 'node:sqlite';
import type { LoadedConfig } from '../config/load.ts';
import { Catalogue } from '../content/catalogue.ts';
import { HashCache } from '../content/hash-cache.ts';
import { scanContent } from '../content/scan.ts';
import { createProgressRenderer } from '../content/progress.ts';
import type { PackageSpec } from '../content/types.ts';
import { contentView } from '../content/view.ts';
import type { ContentView } from '../boot/sequence.ts';

export function packageSpecs(cfg: LoadedConfig): PackageSpec[] {
  return Object.values(cfg.packages).map((p) => ({ id: p.id, kind: p.kind, path: p.path, ...(p.models.length ? { models: p.models } : {}) }));
}

export class ContentService {
  private cat: Catalogue;
  private readonly db: DatabaseSync;
  private readonly log: Logger;
  private specsKey = '';
  private running: Promise<void> = Promise.resolve();
  private scans = 0;
  private abort = new AbortController();

  constructor(db: DatabaseSync, logger: Logger) {
    this.db = db;
    this.log = logger.child({ component: 'content' });
    this.cat = new Catalogue([], [], new Map(), { cache: new HashCache(db), logger: this.log });
  }

  get catalogue(): Catalogue {
    return this.cat;
  }

  get scanning(): boolean {
    return this.scans > 0;
  }

  view(): ContentView {
    return contentView(this.cat, this.scanning);
  }

  /** Scan when the configured packages differ from the last scan; scans run one at a time. */
  update(cfg: LoadedConfig, reason: string): Promise<void> {
    const specs = packageSpecs(cfg);
    const key = JSON.stringify(specs);
    if (key === this.specsKey) return this.running;
    this.specsKey = key;
    this.scans++;
    const signal = this.abort.signal;
    this.running = this.running.then(async () => {
      try {
        if (signal.aborted) return;
        this.log.info({ packages: specs.length, reason }, 'content scan started');
        const progress = createProgressRenderer({ tty: false, logger: this.log });
        const next = await scanContent(specs, { db: this.db, logger: this.log, onProgress: progress.onProgress, signal });
        progress.finish();
        const old = this.cat;
        this.cat = next;
        old.close();
        for (const [id, problem] of next.problems()) this.log.warn({ package: id }, `content package unavailable: ${problem}`);
      } catch (e) {
        if (!signal.aborted) this.log.error({ err: e }, 'content scan failed');
      } finally {
        this.scans--;
      }
    });
    return this.running;
  }

  health(): { packages: number; unavailable: string[]; scanning: boolean } {
    return { packages: this.cat.list().length, unavailable: [...this.cat.problems().keys()], scanning: this.scanning };
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.running.catch(() => undefined);
    this.cat.close();
  }
}
