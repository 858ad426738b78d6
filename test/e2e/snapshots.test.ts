// Snapshots through the real node shell (lib/io/node.ts), not only in the simulation: a node
// saves its own snapshot off the persist chain and compacts its log behind it; a follower that
// was away long enough catches up from the leader's snapshot; a node restarts from its snapshot
// and log tail. The state must come out the same everywhere.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { LockClient } from '../../lib';
import { parseSnapshotFile } from '../../lib/io/snapshot-file';
import { startInProcessCluster, type InProcessCluster } from '../helpers/in-process-cluster';
import { connectRaw, waitFor } from '../helpers/raw-client';

describe('e2e: snapshots in a 3-node cluster', function () {
  this.timeout(60000);
  let cluster: InProcessCluster;

  before(async () => {
    cluster = await startInProcessCluster({ nodes: 3, nodeOptions: () => ({ snapshotEveryEntries: 40, fsync: 'batch' }) });
  });

  after(async () => {
    await cluster?.stop();
  });

  async function staleView(id: string, lock: string, file: string): Promise<{ owner: unknown; data: unknown }> {
    const c = await connectRaw(cluster.port(id));
    try {
      const check = await c.request({ action: 'check', lock_name: lock, stale_ok: true });
      const read = await c.request({ action: 'read', file, stale_ok: true });
      return { owner: check['owner'], data: read['data'] };
    } finally {
      c.close();
    }
  }

  function snapshotIndexOf(id: string): Promise<number> {
    const dir = (cluster.node(id) as unknown as { options: { dataDir: string } }).options.dataDir;
    return fs.readFile(path.join(dir, 'snapshot.json'), 'utf8').then((text) => parseSnapshotFile(text).index, () => 0);
  }

  it('a follower away for many snapshots catches up from one; every node restarts from its own', async () => {
    const leader = await cluster.leader();
    const away = cluster.ids.find((id) => id !== leader) as string;
    await cluster.stopNode(away);
    const lock = `snap-${randomUUID().slice(0, 8)}`;
    const kept = `${lock}-kept`;
    const client = new LockClient({ servers: [`127.0.0.1:${cluster.port(leader)}`] });
    let expected = '';
    try {
      for (let i = 0; i < 120; i++) {
        const held = await client.preempt(lock);
        await client.append(held, `${i};`);
        expected += `${i};`;
        await held.release();
      }
      await client.preempt(kept);
      await waitFor(() => snapshotIndexOf(leader), (index) => index >= 200, 10000);
      expect(cluster.logs(leader).some((line) => line['msg'] === 'snapshot_saved' || line['event'] === 'snapshot_saved')).to.equal(true);

      await cluster.restartNode(away);
      await waitFor(() => staleView(away, kept, lock), (view) => view.owner === client.clientId && view.data === expected, 15000);
      // It caught up from a snapshot: its own snapshot file covers what it never saw entry by entry.
      // (The leader makes it when sending, so it holds everything: the node may serve it before
      // the file is durable.)
      await waitFor(() => snapshotIndexOf(away), (index) => index >= 40, 5000);

      for (const id of cluster.ids) {
        await cluster.restartNode(id);
        await waitFor(() => staleView(id, kept, lock), (view) => view.owner === client.clientId && view.data === expected, 15000);
      }
    } finally {
      await client.close();
    }
  });
});
