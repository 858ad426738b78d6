// The log's CRC-32 must be zlib's, byte for byte: segments written before it (with zlib.crc32)
// are still checked by it, and a torn or flipped record must still be caught.
import { expect } from 'chai';
import { crc32 as zlibCrc32 } from 'node:zlib';

import { Prng } from '../../lib/core/prng';
import { crc32 } from '../../lib/io/crc32';

describe('crc32', () => {
  it('gives the standard check value for "123456789"', () => {
    const bytes = Buffer.from('123456789');
    expect(crc32(bytes, 0, bytes.length)).to.equal(0xcbf43926);
    expect(crc32(bytes, 0, 0)).to.equal(0);
  });

  it('equals zlib.crc32 of the same range, for every length across the table walk and zlib', () => {
    const rng = new Prng(7);
    const bytes = Buffer.alloc(2048 + 16);
    for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
    for (let length = 0; length <= 2048; length++) {
      const start = length % 13;
      const expected = zlibCrc32(bytes.subarray(start, start + length));
      expect(crc32(bytes, start, start + length), `length ${length}`).to.equal(expected);
    }
  });

  it('changes when any one bit of a record flips', () => {
    const bytes = Buffer.from('{"type":"preempt","at":12,"client":"c1","conn":"n1/boot/1","req":"r9","lock":"a"}');
    const good = crc32(bytes, 0, bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        bytes[i] ^= 1 << bit;
        expect(crc32(bytes, 0, bytes.length)).to.not.equal(good);
        bytes[i] ^= 1 << bit;
      }
    }
  });
});
