// NDJSON framing with a bound (PROTOCOL §2): splits a byte stream into lines and refuses a line
// longer than `frameBytesMax` before buffering more of it (ws receiver.js style).
import { isUtf8 } from 'node:buffer';
import { frameBytesMax } from '../core/limits';

export type FrameResult = { kind: 'line'; line: string } | { kind: 'too_large' } | { kind: 'not_utf8' };

export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private overflow = false;

  constructor(private readonly lineBytesMax: number = frameBytesMax) {}

  /** Feeds one chunk; calls `onFrame` per complete line (without the newline). After a
   *  `too_large` frame the splitter stops: the connection is to be closed. */
  push(chunk: Buffer, onFrame: (frame: FrameResult) => void): void {
    if (this.overflow) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const bytes = this.partBytes + (nl - start);
      if (bytes > this.lineBytesMax) return this.tooLarge(onFrame);
      let raw: Buffer;
      if (this.partBytes === 0) raw = chunk.subarray(start, nl);
      else {
        this.parts.push(chunk.subarray(start, nl));
        raw = Buffer.concat(this.parts, bytes);
        this.parts = [];
        this.partBytes = 0;
      }
      start = nl + 1;
      // PROTOCOL §2: lines are UTF-8. Decoding bad bytes would silently turn them into U+FFFD
      // and serve a request the client never sent; refuse it instead.
      if (!isUtf8(raw)) {
        onFrame({ kind: 'not_utf8' });
        continue;
      }
      let line = raw.toString('utf8');
      if (line.length > 0 && line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1); // tolerate CRLF
      if (line.length > 0) onFrame({ kind: 'line', line });
    }
    if (start < chunk.length) {
      this.partBytes += chunk.length - start;
      if (this.partBytes > this.lineBytesMax) return this.tooLarge(onFrame);
      this.parts.push(chunk.subarray(start));
    }
  }

  private tooLarge(onFrame: (frame: FrameResult) => void): void {
    this.overflow = true;
    this.parts = [];
    this.partBytes = 0;
    onFrame({ kind: 'too_large' });
  }
}
