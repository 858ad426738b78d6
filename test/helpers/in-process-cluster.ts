// A cluster of in-process LatchkeyNodes on free loopback ports and a temporary data directory,
// for tests that need options the command line would read from files (TLS material, secrets)
// or that look inside a node (its status, its log lines).
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../../lib/io/logger';
import { LatchkeyNode, type NodeOptions } from '../../lib/io/node';
import { freePorts } from '../../lib/scenario/cluster';

export type LogLine = Record<string, unknown>;

export interface InProcessClusterOptions {
  nodes: number;
  /** Also serve HTTP on a free port. */
  http?: boolean;
  /** Per-node extra options (tls, clusterSecret, ...). */
  nodeOptions?: (id: string) => Partial<NodeOptions>;
}

export interface InProcessCluster {
  readonly ids: string[];
  node(id: string): LatchkeyNode;
  /** The node's client port. */
  port(id: string): number;
  /** Everything the node logged (info and up), parsed. */
  logs(id: string): LogLine[];
  /** Waits until every node of `ids` (default all) names the same leader, one of them. */
  leader(ids?: string[], timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
  /** Stops one node (as a clean stop) and, with `restart`, starts it again on its data dir. */
  stopNode(id: string): Promise<void>;
  restartNode(id: string): Promise<void>;
}

export async function startInProcessCluster(options: InProcessClusterOptions): Promise<InProcessCluster> {
  const dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-inproc-'));
  const ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
  const ports = await freePorts(options.nodes);
  const peers = new Map(ids.map((id, i) => [id, { host: '127.0.0.1', port: ports[i] as number }]));
  const nodes = new Map<string, LatchkeyNode>();
  const logs = new Map<string, LogLine[]>(ids.map((id) => [id, []]));
  const stop = async (): Promise<void> => {
    await Promise.all([...nodes.values()].map((node) => node.stop()));
    await fs.rm(dataRoot, { recursive: true, force: true });
  };
  const create = (id: string): LatchkeyNode => {
    const lines = logs.get(id) as LogLine[];
    return new LatchkeyNode({
      id,
      listen: peers.get(id) as { host: string; port: number },
      peers,
      dataDir: path.join(dataRoot, id),
      ...(options.http === true ? { http: { host: '127.0.0.1', port: 0 } } : {}),
      fsync: 'never',
      heartbeatMs: 50,
      electionTimeoutMs: 300,
      sessionTtlMs: 30000,
      logger: createLogger('info', { node: id }, (line) => lines.push(JSON.parse(line) as LogLine)),
      ...options.nodeOptions?.(id),
    });
  };
  try {
    for (const id of ids) {
      const node = create(id);
      nodes.set(id, node);
      await node.start();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const node = (id: string): LatchkeyNode => {
    const found = nodes.get(id);
    if (found === undefined) throw new Error(`no node ${id}`);
    return found;
  };
  return {
    ids,
    node,
    port: (id) => peers.get(id)?.port as number,
    logs: (id) => logs.get(id) ?? [],
    leader: async (among = ids, timeoutMs = 15000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const leaders = new Set(among.map((id) => node(id).status().leader));
        const [leader] = [...leaders];
        if (leaders.size === 1 && typeof leader === 'string' && among.includes(leader) && node(leader).status().role === 'leader') {
          return leader;
        }
        if (Date.now() > deadline) throw new Error(`no leader agreed among ${among.join(',')} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop,
    stopNode: async (id) => {
      await node(id).stop();
    },
    restartNode: async (id) => {
      await node(id).stop();
      const fresh = create(id);
      nodes.set(id, fresh);
      await fresh.start();
    },
  };
}
