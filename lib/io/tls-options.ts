// TLS for the client port, the peer links and the HTTP front door (`--tls-cert --tls-key
// --tls-ca`). Every node uses one certificate and key for all three, and one CA both to check
// the peers it dials and to tell peers from clients on the port it serves.
import type * as tls from 'node:tls';

/** PEM contents, read once at start-up. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/**
 * The shared client/peer port. Clients need not present a certificate (requestCert without
 * rejectUnauthorized), but one who does is checked against the CA, and a connection that then
 * announces itself as a peer must have been `authorized` (client-listener.ts refuses it
 * otherwise).
 */
export function listenerTlsOptions(material: TlsMaterial): tls.TlsOptions {
  return { cert: material.cert, key: material.key, ca: material.ca, requestCert: true, rejectUnauthorized: false };
}

/**
 * An outbound peer link: present our certificate, and accept the other node's only if the
 * cluster CA signed it. The host name is NOT checked: `--peers` addresses are IPs, and may be a
 * proxy's rather than the node's own (PROTOCOL §1), so no name in a certificate could match them
 * all. A peer is identified by holding a certificate of the cluster's CA (give the cluster a CA
 * of its own, not one that also signs client certificates) and, with --cluster-secret-file, by
 * the secret (peer-auth.ts); which member it is comes from its `peer_hello`.
 */
export function peerDialTlsOptions(material: TlsMaterial): tls.ConnectionOptions {
  return {
    cert: material.cert, key: material.key, ca: material.ca,
    rejectUnauthorized: true,
    // Called only once the chain checked out against `ca`; returning undefined accepts any name.
    checkServerIdentity: () => undefined,
  };
}
