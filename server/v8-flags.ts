/**
 * V8 flags the daemon runs with (cli.ts re-executes `serve` and `demo` with them). Benchmarks and
 * test runners that stand in for the daemon start their Node with the same flags, so they measure
 * the same garbage collector.
 *
 * 4 MiB semi-spaces, not V8's 16-32: file bytes live in Buffers outside the heap, and a large young
 * generation only inflated the resident set under load (bench http: peak RSS 175 -> 150 MB,
 * throughput unchanged). It also keeps each young-generation pause short: a DHCP storm allocates
 * fast, and a scavenge of a 16 MiB semi-space took 2.5-11 ms on the benchmark machine against
 * about 0.8 ms at 4 MiB, time in which no packet is answered.
 */
export const DAEMON_V8_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
