// `--gc lean|v8`: how V8's heap may grow in a server process (issue 7: memory per lock).
import { expect } from 'chai';
import { parseServerArgs, UsageError } from '../../lib/cli/server-cmd';

describe('cli: --gc', () => {
  const base = ['--id', 'n1', '--listen', '127.0.0.1:7001', '--peers', 'n1=127.0.0.1:7001', '--data', '/tmp/x'];

  it('is lean unless told v8, and refuses anything else', () => {
    expect(parseServerArgs(base).gc).to.equal('lean');
    expect(parseServerArgs([...base, '--gc', 'v8']).gc).to.equal('v8');
    expect(() => parseServerArgs([...base, '--gc', 'small'])).to.throw(UsageError, "--gc must be lean or v8 (got 'small')");
  });
});
