// `--grpc HOST:PORT` on `server` (PROTOCOL §1): accepted now that the build serves gRPC, and
// checked like every other address flag.
import { expect } from 'chai';
import { parseServerArgs, UsageError } from '../../lib/cli/server-cmd';

const base = ['--id', 'n1', '--listen', '127.0.0.1:7001', '--peers', 'n1=127.0.0.1:7001', '--data', '/tmp/latchkey-flags'];

describe('server --grpc', () => {
  it('is parsed into the node options', () => {
    expect(parseServerArgs([...base, '--grpc', '0.0.0.0:9001']).grpc).to.deep.equal({ host: '0.0.0.0', port: 9001 });
    expect(parseServerArgs([...base, '--grpc', '[::1]:9001']).grpc).to.deep.equal({ host: '::1', port: 9001 });
    expect(parseServerArgs(base)).to.not.have.property('grpc');
  });

  it('refuses an address that is not HOST:PORT, naming the flag', () => {
    expect(() => parseServerArgs([...base, '--grpc', '9001'])).to.throw(UsageError, "--grpc must be HOST:PORT (got '9001')");
  });
});
