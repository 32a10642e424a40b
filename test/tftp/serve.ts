/**
 * Runs the TFTP server alone in this process, for tests that need it inside a network namespace.
 * argv: root host port. Prints `READY <port>`; on SIGTERM prints `STATS <json>` and exits.
 */
import { startTftp } from '../../server/tftp/server.ts';
import { silentLogger } from '../../server/log.ts';

const [root, host, port] = process.argv.slice(2);
const srv = await startTftp({ root: root!, host: host!, port: Number(port), logger: silentLogger() });
process.stdout.write(`READY ${srv.address().port}\n`);
process.on('SIGTERM', () => {
  void srv.close().then(() => {
    process.stdout.write(`STATS ${JSON.stringify(srv.stats())}\n`, () => process.exit(0));
  });
});
