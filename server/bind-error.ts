/** A socket bind failure explained for an admin: which port, why, and how to fix it. */
export function explainBindError(what: string, host: string, port: number, err: NodeJS.ErrnoException): Error {
  const where = `${host}:${port}`;
  let why: string;
  switch (err.code) {
    case 'EACCES':
      why =
        port < 1024
          ? `port ${port} is privileged. Run swarmboot as root, or grant the Node binary that runs it the capability: ` +
            `sudo setcap 'cap_net_bind_service=+ep' ${process.execPath}, or AmbientCapabilities=CAP_NET_BIND_SERVICE in its systemd unit, ` +
            'or choose a port above 1023 in the config'
          : `permission denied binding ${where}`;
      break;
    case 'EADDRINUSE':
      why = `another program already listens on ${where} (find it with: ss -lunp 'sport = :${port}' or ss -ltnp 'sport = :${port}'); stop it or change the port in the config`;
      break;
    case 'EADDRNOTAVAIL':
      why = `${host} is not an address of this machine; fix the listen address in the config`;
      break;
    default:
      why = err.message;
  }
  const e = new Error(`${what} cannot listen on ${where}: ${why}`);
  (e as NodeJS.ErrnoException).code = err.code;
  return e;
}
