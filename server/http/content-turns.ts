/**
 * Shares the event loop between content bodies and everything else. HTTP bodies, TFTP and DHCP
 * answers run on one loop: without a limit, twenty downloads each wrote a 1 MiB chunk per turn, a
 * turn took 15-25 ms of kernel copying, and a DHCP OFFER or TFTP block waited that long
 * (bench/http.ts). Each transfer waits here after a chunk; each turn lets at most `perTurn` of them
 * go on, first come first served, so a turn writes a few MiB and UDP is polled in between.
 */
export class TurnGate {
  private readonly perTurn: number;
  private readonly queue: Array<() => void> = [];
  private scheduled = false;

  constructor(perTurn: number) {
    this.perTurn = Math.max(1, perTurn);
  }

  /** Resolves in a later event-loop turn, when this caller's place in the queue comes. */
  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push(resolve);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const n = Math.min(this.perTurn, this.queue.length);
      for (let i = 0; i < n; i++) this.queue.shift()!();
      if (this.queue.length > 0) this.schedule();
    });
  }
}
