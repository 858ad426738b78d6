// The simulated network between replicas (TigerBeetle's packet_simulator.zig in miniature):
// every message is serialized as the real transport does (JSON), then delayed by a seeded
// latency, and with seeded probabilities dropped, duplicated, or held back long enough to be
// overtaken (reordered). Partitions cut directed links, so a cut can be symmetric (a node
// isolated, the cluster split in two) or one-way (a node that can send but not hear). A message
// is lost if its link is cut when it is sent or when it would arrive.
import type { Prng } from '../core/prng';
import type { PeerMessage } from '../replica/peer-messages';

export interface NetworkOptions {
  latencyMsMin: number;
  latencyMsMax: number;
  dropProbability: number;
  duplicateProbability: number;
  /** Chance that a message is held back by up to delayMsMax (it is then usually overtaken). */
  delayProbability: number;
  delayMsMax: number;
}

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  cutOff: number;
  partitions: number;
}

export type PartitionKind = 'isolate' | 'split' | 'one_way_in' | 'one_way_out' | 'random_links';

export class SimNetwork {
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, cutOff: 0, partitions: 0 };
  /** Directed links that are cut by the current partition, as "from>to". */
  private readonly cut = new Set<string>();
  /** Directed links that are down on their own. */
  private readonly flapped = new Set<string>();
  /** Nodes whose outbound messages are all lost. */
  private readonly muted = new Set<string>();
  /** Nodes cut off both ways (counted: isolations overlap). */
  private readonly isolated = new Map<string, number>();
  /** While false (the liveness phase), nothing is dropped, duplicated or held back. */
  faulty = true;
  /** Per node: when it last crashed, and with what chance its messages then in flight are lost. */
  private readonly crashedAt = new Map<string, { at: number; loss: number }>();
  now = 0;

  constructor(
    private readonly ids: readonly string[],
    private options: NetworkOptions,
    private readonly prng: Prng,
    private readonly schedule: (delayMs: number, tag: string, run: () => void) => void,
    private readonly deliver: (message: PeerMessage) => void,
  ) {}

  get partitioned(): boolean {
    return this.cut.size > 0;
  }

  describeCut(): string {
    return [...this.cut].join(',');
  }

  linkUp(from: string, to: string): boolean {
    const link = `${from}>${to}`;
    return !this.cut.has(link) && !this.flapped.has(link) && !this.muted.has(from) && !this.isolated.has(from) && !this.isolated.has(to);
  }

  /** Cuts (or restores) every link of one node, independently of partitions: isolations of
   *  several nodes may overlap. */
  isolateNode(node: string, on: boolean): void {
    const count = (this.isolated.get(node) ?? 0) + (on ? 1 : -1);
    if (count > 0) this.isolated.set(node, count);
    else this.isolated.delete(node);
  }

  /** Flaky links (TigerBeetle's path clogging): each directed link goes down on its own, for a
   *  while, independently of partitions and of the other links. */
  flap(link: string, down: boolean): void {
    if (down) this.flapped.add(link);
    else this.flapped.delete(link);
  }

  get links(): string[] {
    const links: string[] = [];
    for (const a of this.ids) for (const b of this.ids) if (a !== b) links.push(`${a}>${b}`);
    return links;
  }

  /** Nothing the node sends arrives (its outbound network died); it still hears the others. */
  mute(node: string, muted: boolean): void {
    if (muted) this.muted.add(node);
    else this.muted.delete(node);
  }

  send(messages: readonly PeerMessage[]): void {
    for (const message of messages) this.sendOne(message);
  }

  /** Messages sent, by type (for describing a message storm). */
  readonly sentByType = new Map<string, number>();

  private sendOne(message: PeerMessage): void {
    this.stats.sent++;
    this.sentByType.set(message.type, (this.sentByType.get(message.type) ?? 0) + 1);
    if (!this.linkUp(message.from, message.to)) {
      this.stats.cutOff++;
      return;
    }
    if (this.faulty && this.prng.chance(this.options.dropProbability)) {
      this.stats.dropped++;
      return;
    }
    const bytes = JSON.stringify(message);
    let copies = 1;
    if (this.faulty && this.prng.chance(this.options.duplicateProbability)) {
      copies = 2;
      this.stats.duplicated++;
    }
    const sentAt = this.now;
    for (let i = 0; i < copies; i++) {
      const delayMs = this.latencyMs();
      this.schedule(delayMs, 'net', () => {
        if (!this.linkUp(message.from, message.to)) {
          this.stats.cutOff++;
          return;
        }
        const crash = this.crashedAt.get(message.from);
        if (crash !== undefined && crash.at >= sentAt && this.prng.chance(crash.loss)) {
          this.stats.dropped++;
          return;
        }
        this.stats.delivered++;
        this.deliver(JSON.parse(bytes) as PeerMessage);
      });
    }
  }

  private latencyMs(): number {
    const { latencyMsMin, latencyMsMax } = this.options;
    let ms = latencyMsMin + this.prng.next() * (latencyMsMax - latencyMsMin);
    if (this.faulty && this.prng.chance(this.options.delayProbability)) ms += this.prng.next() * this.options.delayMsMax;
    return ms;
  }

  /** Cuts links by one of the partition shapes; returns a description for the log. */
  partition(kind: PartitionKind): string {
    this.heal();
    this.stats.partitions++;
    const ids = this.ids;
    switch (kind) {
      case 'isolate': {
        const node = this.prng.pick(ids);
        for (const other of ids) if (other !== node) this.cutBoth(node, other);
        return `isolate ${node}`;
      }
      case 'split': {
        // A random non-empty proper subset on one side.
        const side = new Set<string>();
        const size = this.prng.int(1, ids.length - 1);
        const pool = [...ids];
        while (side.size < size) side.add(pool.splice(this.prng.int(0, pool.length - 1), 1)[0] as string);
        for (const a of ids) for (const b of ids) if (side.has(a) && !side.has(b)) this.cutBoth(a, b);
        return `split ${[...side].join('+')} | ${ids.filter((id) => !side.has(id)).join('+')}`;
      }
      case 'one_way_in': {
        // The node sends but hears nothing: it will time out and campaign, others still hear it.
        const node = this.prng.pick(ids);
        for (const other of ids) if (other !== node) this.cut.add(`${other}>${node}`);
        return `deafen ${node}`;
      }
      case 'one_way_out': {
        const node = this.prng.pick(ids);
        for (const other of ids) if (other !== node) this.cut.add(`${node}>${other}`);
        return `mute ${node}`;
      }
      case 'random_links': {
        for (const a of ids) for (const b of ids) if (a !== b && this.prng.chance(0.3)) this.cut.add(`${a}>${b}`);
        return `cut ${this.describeCut() || 'nothing'}`;
      }
      default: {
        const never: never = kind;
        throw new Error(`unknown partition ${String(never)}`);
      }
    }
  }

  /** The node crashed: what it sent and is still on the way may be lost with it. */
  crashed(node: string, lossProbability: number): void {
    this.crashedAt.set(node, { at: this.now, loss: lossProbability });
  }

  /** Cuts every link of one node (both ways). */
  isolate(node: string): string {
    this.heal();
    this.stats.partitions++;
    for (const other of this.ids) if (other !== node) this.cutBoth(node, other);
    return `isolate ${node}`;
  }

  heal(): void {
    this.cut.clear();
  }

  /** Heals partitions, flaky links and muted nodes. */
  healAll(): void {
    this.cut.clear();
    this.flapped.clear();
    this.muted.clear();
    this.isolated.clear();
  }

  private cutBoth(a: string, b: string): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }
}
