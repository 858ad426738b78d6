// A cluster of LatchkeyNodes inside the test process, over real loopback sockets, each in its
// own temporary data directory (what `node bin/main cluster` does). Cheaper than node
// processes when a test needs the real node behind a front door but no crashes or pauses.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LatchkeyNode, type NodeOptions } from '../../lib/io/node';
import { silentLogger } from '../../lib/io/logger';
import { freePorts } from '../../lib/scenario/cluster';

export interface InProcessCluster {
  nodes: Map<string, LatchkeyNode>;
  /** The id every node agrees leads, once they do. */
  leader(timeoutMs?: number): Promise<string>;
  /** Stops every node and removes the data directories. */
  stop(): Promise<void>;
}

/** Starts `count` nodes n1..nN; `extra` adds options to every node (e.g. a gRPC port). */
export async function startInProcessCluster(
  count: number, extra: Partial<NodeOptions> = {},
): Promise<InProcessCluster> {
  const dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-inproc-'));
  const ports = await freePorts(count);
  const peers = new Map(ports.map((port, i) => [`n${i + 1}`, { host: '127.0.0.1', port }]));
  const nodes = new Map<string, LatchkeyNode>();
  const stop = async (): Promise<void> => {
    await Promise.all([...nodes.values()].map((node) => node.stop()));
    await fs.rm(dataRoot, { recursive: true, force: true });
  };
  try {
    for (const [id, listen] of peers) {
      const node = new LatchkeyNode({
        id, listen, peers, dataDir: path.join(dataRoot, id), fsync: 'never',
        heartbeatMs: 50, electionTimeoutMs: 300, sessionTtlMs: 30000, logger: silentLogger, ...extra,
      });
      nodes.set(id, node);
      await node.start();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, leader: (timeoutMs = 10000) => agreedLeader(nodes, timeoutMs), stop };
}

async function agreedLeader(nodes: Map<string, LatchkeyNode>, timeoutMs: number): Promise<string> {
  const started = Date.now();
  for (;;) {
    const statuses = [...nodes.values()].map((node) => node.status());
    const leader = statuses[0]?.leader ?? null;
    const agreed = leader !== null && statuses.every((s) => s.leader === leader && s.term === statuses[0]?.term)
      && statuses.some((s) => s.node === leader && s.role === 'leader');
    if (agreed) return leader;
    if (Date.now() - started > timeoutMs) throw new Error(`no agreed leader within ${timeoutMs} ms: ${JSON.stringify(statuses)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
