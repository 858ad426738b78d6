// argv dispatch (PROTOCOL §1): (no command) | scenario | server | cluster | client.
import { runCluster, runServer, UsageError } from './server-cmd';

const usage = `usage:
  node bin/main                              run every scenario in scenarios/
  node bin/main scenario NAME|FILE           run one scenario
  node bin/main server --id ID --listen HOST:PORT --peers ID=HOST:PORT,... --data DIR [--http HOST:PORT] [--grpc HOST:PORT]
                       [--heartbeat-ms N] [--election-timeout-ms N] [--session-ttl-ms N]
                       [--fsync always|batch|never] [--log-level debug|info|warn|error]
                       [--tls-cert F --tls-key F --tls-ca F] [--cluster-secret-file F] [--auth-token-file F]
                       [--max-connections N] [--max-sessions N] ... (README "Limits")
  node bin/main cluster [--nodes 3] [--base-port 7001] [--data DIR] [--http-base-port N] [--grpc-base-port N]
  node bin/main client --server HOST:PORT[,HOST:PORT...] [LOCK READ|WRITE [VALUE] [HOLD_SECONDS]]
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
        return (await import('./scenario-cmd')).runAllScenarios();
      case 'scenario':
        return (await import('./scenario-cmd')).runScenarioCommand(rest);
      case 'server':
        return await runServer(rest);
      case 'cluster':
        return await runCluster(rest);
      case 'client':
        return (await import('./client-cmd')).runClient(rest);
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(usage);
        return 0;
      default:
        process.stderr.write(`unknown command '${command}'\n${usage}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
