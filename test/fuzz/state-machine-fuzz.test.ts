// Property-based fuzzing of the pure lock state machine (lib/fuzz/state-machine-fuzz.ts): a
// bounded number of random cases must hold every property, and the harness must catch, and
// shrink to a few steps, a deliberately broken invariant and a planted crash.
import { expect } from 'chai';
import type { Command } from '../../lib/locks/commands';
import { apply, type ApplyResult } from '../../lib/locks/state-machine';
import type { LockState } from '../../lib/locks/state';
import { formatFailure, runTarget } from '../../lib/fuzz/report';
import { stateMachineProperty, type ApplyFn, type StateMachineCase } from '../../lib/fuzz/state-machine-fuzz';

const seed = 20240611;

function counterexampleSteps(value: unknown): number {
  const [world] = value as [StateMachineCase];
  return world.steps.length;
}

describe('fuzz: the pure state machine', function () {
  this.timeout(30000);

  it('holds invariants, agrees across replicas and survives snapshots over 400 random cases', () => {
    const result = runTarget('state-machine', stateMachineProperty(), { cases: 400, seed });
    expect(result.failure, formatFailure(result)).to.equal(null);
    expect(result.cases).to.equal(400);
  });

  it('catches a broken invariant and shrinks it to the two steps that matter', () => {
    // A release that frees the last lock also corrupts the token counter.
    const broken: ApplyFn = (state: LockState, index: number, command: Command): ApplyResult => {
      const result = apply(state, index, command);
      if (command.type === 'release' && result.answer?.ok === true && state.locks.size === 0) state.lastToken = -1;
      return result;
    };
    const result = runTarget('state-machine', stateMachineProperty(broken), { cases: 400, seed });
    expect(result.failure, 'the broken invariant was not caught').to.not.equal(null);
    expect(result.failure?.message).to.include('lastToken -1 is negative');
    // One grant and its release are all it takes.
    expect(counterexampleSteps(result.failure?.value)).to.equal(2);
    expect(result.failure?.replay).to.match(/--target state-machine --seed \d+ --path [\d:]+/);
  });

  it('catches a planted crash and replays it from its seed and path', () => {
    const crashing: ApplyFn = (state, index, command) => {
      if (command.type === 'append' && command.data.includes('\u0000')) throw new TypeError('planted crash on a NUL');
      return apply(state, index, command);
    };
    const first = runTarget('state-machine', stateMachineProperty(crashing), { cases: 1000, seed });
    const failure = first.failure;
    expect(failure, 'the planted crash was not found').to.not.equal(null);
    expect(failure?.message).to.equal('TypeError: planted crash on a NUL');
    const replay = runTarget('state-machine', stateMachineProperty(crashing), { cases: 1, seed: failure?.seed ?? 0, path: failure?.path ?? '' });
    expect(replay.failure?.message).to.equal(failure?.message);
    expect(replay.failure?.counterexample).to.equal(failure?.counterexample);
  });
});
