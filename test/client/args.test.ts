// parseFlags: the generic flag parser of the subcommands, and its precise error messages.
import { expect } from 'chai';
import { FlagError, parseFlags } from '../../lib/cli/args';

describe('parseFlags', () => {
  const spec = { server: 'string', nodes: 'number', verbose: 'boolean' } as const;

  function errorOf(argv: string[]): FlagError {
    try {
      parseFlags(argv, spec);
    } catch (err) {
      expect(err).to.be.instanceOf(FlagError);
      return err as FlagError;
    }
    throw new Error(`expected parseFlags(${argv.join(' ')}) to throw`);
  }

  it('reads --name value, --name=value, booleans and positionals in any order', () => {
    const { flags, positionals } = parseFlags(['L', '--server', 'h:1', 'WRITE', '--nodes=3', '--verbose', 'v'], spec);
    expect(flags).to.deep.equal({ server: 'h:1', nodes: 3, verbose: true });
    expect(positionals).to.deep.equal(['L', 'WRITE', 'v']);
  });

  it('keeps single-dash words and everything after -- as positionals', () => {
    const { flags, positionals } = parseFlags(['L', 'WRITE', '-1', '--', '--server', 'x'], spec);
    expect(flags).to.deep.equal({});
    expect(positionals).to.deep.equal(['L', 'WRITE', '-1', '--server', 'x']);
  });

  it('names a flag that is missing its value', () => {
    expect(errorOf(['--server']).message).to.equal('--server needs a value');
    expect(errorOf(['--server', '--verbose']).message).to.equal('--server needs a value');
    expect(errorOf(['--server=']).message).to.equal('--server needs a value');
    expect(errorOf(['--server']).flag).to.equal('--server');
    expect(errorOf(['--server']).code).to.equal('bad_flag');
  });

  it('names an unknown flag', () => {
    expect(errorOf(['--foo']).message).to.equal('unknown flag --foo');
    expect(errorOf(['--foo=1']).message).to.equal('unknown flag --foo');
    expect(errorOf(['--constructor']).message).to.equal('unknown flag --constructor');
  });

  it('refuses a non-number, a repeated flag and a value on a boolean', () => {
    expect(errorOf(['--nodes', 'three']).message).to.equal("--nodes must be a number, got 'three'");
    expect(errorOf(['--server', 'a:1', '--server', 'b:2']).message).to.equal('--server given more than once');
    expect(errorOf(['--verbose=yes']).message).to.equal('--verbose takes no value');
  });
});
