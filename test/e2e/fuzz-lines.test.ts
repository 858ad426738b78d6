// Fuzzes the TCP front door of a real node process (node bin/main server) with one long stream
// of malformed lines from the seeded generator in lib/fuzz (FUZZ_SEED to replay), spread over
// six connections. The node must stay up, answer every line exactly once (bad_request where the
// schema says so, a legitimate answer otherwise), never close a connection for a bad line under
// the frame limit, log no error, and serve a well-formed client afterwards. test/fuzz runs many
// small cases of the same generator against a node in the test process; this one is the long
// stream against the shipped binary.
import { expect } from 'chai';
import { Prng } from '../../lib/core/prng';
import { frameBytesMax } from '../../lib/core/limits';
import { AvailabilityProbe } from '../../lib/fuzz/fuzz-node';
import { runPlans, type ConnectionPlan } from '../../lib/fuzz/live-lines';
import { LineGenerator, type LineKind } from '../../lib/fuzz/raw-lines';
import { nodeForSuite } from '../helpers/node-process';

const lineCount = 2000;
const connectionCount = 6;
const seed = process.env['FUZZ_SEED'] !== undefined ? Number(process.env['FUZZ_SEED']) : 20240611;

/** One generator, one stream: every line fits a frame, so no connection may close. */
function streamPlans(prng: Prng): { plans: ConnectionPlan[]; kinds: Map<LineKind, number> } {
  const gen = new LineGenerator(prng, 'f', false);
  const plans: ConnectionPlan[] = Array.from({ length: connectionCount }, () => ({ lines: [], tail: null }));
  const kinds = new Map<LineKind, number>();
  for (let i = 0; i < lineCount; i++) {
    const { kind, bytes } = gen.line();
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    const ending = bytes.length < frameBytesMax && prng.chance(0.1) ? '\r\n' : '\n';
    plans[prng.int(0, connectionCount - 1)]?.lines.push({ bytes, ending });
  }
  return { plans, kinds };
}

describe('e2e: fuzzed lines against a live node', function () {
  this.timeout(40000);
  const node = nodeForSuite();

  it(`survives ${lineCount} malformed lines and answers each one (seed from FUZZ_SEED)`, async () => {
    // eslint-disable-next-line no-console
    console.log(`      fuzz seed ${seed} (replay with FUZZ_SEED=${seed})`);
    const prng = new Prng(seed);
    const { plans, kinds } = streamPlans(prng);
    const stats = await runPlans(node().port, plans, prng.int(0, 2 ** 31));
    // eslint-disable-next-line no-console
    console.log(`      kinds ${JSON.stringify(Object.fromEntries(kinds))}; ${stats.valid} valid requests; answers ${JSON.stringify(Object.fromEntries(stats.codes))}`);
    expect(stats.valid, 'some lines are valid requests').to.be.greaterThan(lineCount * 0.1);
    expect(stats.codes.get('bad_request') ?? 0).to.be.greaterThan(lineCount / 2);
    expect(stats.codes.get('ok') ?? 0, 'some fuzzed requests succeeded').to.be.greaterThan(50);

    // The node is up and serves a well-formed client normally.
    expect(node().exited).to.equal(false);
    await new AvailabilityProbe().run(node().port);
    const errors = node().logs().filter((l) => l['level'] === 'error');
    expect(errors, JSON.stringify(errors).slice(0, 1000)).to.have.length(0);
  });
});
