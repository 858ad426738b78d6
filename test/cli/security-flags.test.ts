// The security flags of `server`, `cluster` and `client` (PROTOCOL §1): TLS files come in
// threes, every file is read (and checked) at start-up, and a secret file must hold a secret.
// A mistake stops the start with a UsageError that names the flag, before anything listens.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { runClient } from '../../lib/cli/client-cmd';
import { parseServerArgs, runCluster, UsageError } from '../../lib/cli/server-cmd';
import { Capture } from '../helpers/capture';
import { createTestCa, type PemPair, type TestCa } from '../helpers/certs';

const base = ['--id', 'n1', '--listen', '127.0.0.1:0', '--peers', 'n1=127.0.0.1:0', '--data', path.join(os.tmpdir(), 'latchkey-never-created')];

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('security flags', function () {
  this.timeout(20000);
  let dir: string;
  let ca: TestCa;
  let node: PemPair;
  let other: PemPair;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-flags-'));
    ca = await createTestCa(dir, 'ca');
    node = await ca.issue('node');
    other = await ca.issue('other');
  });

  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  function tlsArgs(overrides: { cert?: string; key?: string; ca?: string } = {}): string[] {
    return ['--tls-cert', overrides.cert ?? node.certPath, '--tls-key', overrides.key ?? node.keyPath, '--tls-ca', overrides.ca ?? ca.certPath];
  }

  it('reads the three TLS files and the trimmed secret into the node options', async () => {
    const secretFile = path.join(dir, 'secret');
    await fs.writeFile(secretFile, '  hunter2-but-longer \n');
    const options = parseServerArgs([...base, ...tlsArgs(), '--cluster-secret-file', secretFile]);
    expect(options.tls?.cert.equals(node.cert)).to.equal(true);
    expect(options.tls?.key.equals(node.key)).to.equal(true);
    expect(options.tls?.ca.equals(ca.cert)).to.equal(true);
    expect(options.clusterSecret?.toString()).to.equal('hunter2-but-longer');
  });

  it('without security flags the options carry no TLS and no secret', () => {
    const options = parseServerArgs(base);
    expect(options.tls).to.equal(undefined);
    expect(options.clusterSecret).to.equal(undefined);
  });

  it('refuses partial TLS flags, naming what is missing', () => {
    const onlyCert = usageError(() => parseServerArgs([...base, '--tls-cert', node.certPath]));
    expect(onlyCert.message).to.include('--tls-key and --tls-ca missing');
    const noCa = usageError(() => parseServerArgs([...base, '--tls-cert', node.certPath, '--tls-key', node.keyPath]));
    expect(noCa.message).to.include('--tls-ca missing');
    const onlyCa = usageError(() => parseServerArgs([...base, '--tls-ca', ca.certPath]));
    expect(onlyCa.message).to.include('--tls-cert and --tls-key missing');
  });

  it('refuses an unreadable file, naming the flag and the file', () => {
    const missing = path.join(dir, 'no-such.pem');
    for (const flag of ['cert', 'key', 'ca'] as const) {
      const error = usageError(() => parseServerArgs([...base, ...tlsArgs({ [flag]: missing })]));
      expect(error.message, flag).to.include(`--tls-${flag}: cannot read ${missing}`);
    }
    const error = usageError(() => parseServerArgs([...base, '--cluster-secret-file', missing]));
    expect(error.message).to.include(`--cluster-secret-file: cannot read ${missing}`);
  });

  it('refuses a key that is not the certificate\'s, and a file that is not PEM', async () => {
    const mismatch = usageError(() => parseServerArgs([...base, ...tlsArgs({ key: other.keyPath })]));
    expect(mismatch.message).to.match(/^--tls-cert\/--tls-key\/--tls-ca: /);
    const garbage = path.join(dir, 'garbage.pem');
    await fs.writeFile(garbage, 'not a certificate\n');
    const notPem = usageError(() => parseServerArgs([...base, ...tlsArgs({ cert: garbage })]));
    expect(notPem.message).to.match(/^--tls-cert\/--tls-key\/--tls-ca: /);
  });

  it('refuses an empty (or blank) secret file', async () => {
    const blank = path.join(dir, 'blank');
    await fs.writeFile(blank, ' \n\t\n');
    const error = usageError(() => parseServerArgs([...base, '--cluster-secret-file', blank]));
    expect(error.message).to.equal(`--cluster-secret-file: ${blank} is empty`);
  });

  it('`cluster` checks the same flags before starting any node', async () => {
    let error: unknown;
    await runCluster(['--nodes', '1', '--base-port', '1', '--data', path.join(dir, 'cluster'), '--tls-cert', node.certPath])
      .catch((err: unknown) => { error = err; });
    expect(error).to.be.instanceOf(UsageError);
    expect((error as Error).message).to.include('--tls-key and --tls-ca missing');
    await fs.access(path.join(dir, 'cluster')).then(() => expect.fail('the cluster created its data directory'), () => undefined);
  });

  it('`client --tls-ca` with an unreadable file exits 2 naming the flag', async () => {
    const stderr = new Capture();
    const missing = path.join(dir, 'no-such-ca.pem');
    const stdin = new PassThrough();
    stdin.end();
    const code = await runClient(['--server', '127.0.0.1:1', '--tls-ca', missing, 'L', 'READ'], {
      stdin, stdout: new Capture(), stderr, env: {}, terminal: false,
    });
    expect(code).to.equal(2);
    expect(stderr.text).to.include(`--tls-ca: cannot read ${missing}`);
  });
});
