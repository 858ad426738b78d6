// Throwaway certificates for TLS tests, made at test time with the `openssl` CLI into a
// directory the test owns (and removes): nothing key-like lives in the repository.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const openssl = process.env['OPENSSL'] ?? 'openssl';
/** EC P-256 keys: generated in milliseconds, unlike RSA. */
const keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
/** For nodes and clients alike: usable on both ends of a connection, valid for 127.0.0.1 and
 *  localhost, so LockClient's default host check passes on loopback. */
const leafExtensions = [
  'basicConstraints=CA:FALSE',
  'keyUsage=digitalSignature',
  'extendedKeyUsage=serverAuth,clientAuth',
  'subjectAltName=IP:127.0.0.1,DNS:localhost',
].join('\n');

export interface PemPair {
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
}

export interface TestCa extends PemPair {
  /** A fresh key and a certificate for it, signed by this CA. */
  issue(name: string): Promise<PemPair>;
}

/** A self-signed CA named `name`, its files in `dir` (which must exist). */
export async function createTestCa(dir: string, name: string): Promise<TestCa> {
  const certPath = path.join(dir, `${name}.crt`);
  const keyPath = path.join(dir, `${name}.key`);
  await run(openssl, ['req', '-x509', ...keyArgs, '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${name}`]);
  let serial = 1;
  const ca: TestCa = {
    ...(await readPair(certPath, keyPath)),
    issue: async (leaf) => {
      const leafCert = path.join(dir, `${name}-${leaf}.crt`);
      const leafKey = path.join(dir, `${name}-${leaf}.key`);
      const csr = path.join(dir, `${name}-${leaf}.csr`);
      const extensions = path.join(dir, `${name}-${leaf}.ext`);
      await fs.writeFile(extensions, leafExtensions);
      await run(openssl, ['req', ...keyArgs, '-keyout', leafKey, '-out', csr, '-subj', `/CN=${leaf}`]);
      serial += 1;
      await run(openssl, [
        'x509', '-req', '-in', csr, '-CA', certPath, '-CAkey', keyPath, '-set_serial', String(serial),
        '-days', '2', '-extfile', extensions, '-out', leafCert,
      ]);
      return readPair(leafCert, leafKey);
    },
  };
  return ca;
}

async function readPair(certPath: string, keyPath: string): Promise<PemPair> {
  return { certPath, keyPath, cert: await fs.readFile(certPath), key: await fs.readFile(keyPath) };
}
