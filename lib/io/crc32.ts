// CRC-32 (IEEE 802.3, the polynomial of zlib and gzip) of a byte range, for the log records of
// disk-log.ts. It gives exactly zlib.crc32's value: existing segments stay readable.
//
// Why not just zlib.crc32: a log record is typically ~100 bytes, and for those the cost is the
// call, not the checksum. zlib.crc32 takes a whole buffer, so every record needs a subarray
// (one object) plus a call into C++; that was most of the time spent checking a million
// records at start-up. A slice-by-8 table walk in JavaScript over [start, end) of the read
// buffer allocates nothing and is about three times faster at that size. Past a few hundred
// bytes zlib's SIMD code wins, so long records still go to it.
import { crc32 as zlibCrc32 } from 'node:zlib';

/** Records at least this long are checked by zlib; shorter ones by the table walk below. */
const zlibFromBytes = 512;

/** tables[k * 256 + b]: the CRC of byte b followed by k zero bytes (slice-by-8, Intel 2006). */
const tables = makeTables();

function makeTables(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[b] = c;
  }
  for (let k = 1; k < 8; k++) {
    for (let b = 0; b < 256; b++) {
      const previous = t[(k - 1) * 256 + b];
      t[k * 256 + b] = (previous >>> 8) ^ t[previous & 0xff];
    }
  }
  return t;
}

/** The CRC-32 of bytes[start, end), as an unsigned 32-bit integer (zlib.crc32's value). */
export function crc32(bytes: Uint8Array, start: number, end: number): number {
  if (end - start >= zlibFromBytes) return zlibCrc32(bytes.subarray(start, end));
  const t = tables;
  let c = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const low = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = t[1792 + (low & 0xff)] ^ t[1536 + ((low >>> 8) & 0xff)] ^ t[1280 + ((low >>> 16) & 0xff)] ^ t[1024 + (low >>> 24)]
      ^ t[768 + bytes[i + 4]] ^ t[512 + bytes[i + 5]] ^ t[256 + bytes[i + 6]] ^ t[bytes[i + 7]];
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
