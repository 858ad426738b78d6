// Byte length of a string in UTF-8, without Buffer (the state machine stays free of node:*).
// PROTOCOL §3 reports file sizes in bytes.

export function utf8ByteLength(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3; // a lone high surrogate is written as U+FFFD, 3 bytes
    } else bytes += 3;
  }
  return bytes;
}
