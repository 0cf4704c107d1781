/**
 * The kind of an encoded chat.v1.ClientFrame (the number of the `kind` field
 * it sets, 0 for none) from its top-level tags alone, without decoding it: a
 * gateway passes frames on undecoded and only needs to pick out the rare one
 * it answers itself. The last `kind` field wins, as in a decoder. Undefined
 * for bytes that are not a well-formed message at the top level; the chat
 * server's decoder then says what is wrong with them.
 */
export function clientFrameKind(bytes: Uint8Array): number | undefined {
  let kind = 0;
  let at = 0;
  while (at < bytes.length) {
    const tag = readVarint(bytes, at);
    if (!tag) return undefined;
    at = tag.next;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    if (field === 0) return undefined;
    switch (wireType) {
      case 0: {
        const v = readVarint(bytes, at);
        if (!v) return undefined;
        at = v.next;
        break;
      }
      case 1:
        at += 8;
        break;
      case 2: {
        const len = readVarint(bytes, at);
        if (!len) return undefined;
        at = len.next + len.value;
        // Field 1 is the ref; every other field of ClientFrame is a member of `kind`.
        if (field !== 1) kind = field;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        return undefined;
    }
    if (at > bytes.length) return undefined;
  }
  return kind;
}

/** The varint at `at`: exact up to 2^53, which any tag or length here is; larger values (a ref) are only skipped. */
function readVarint(bytes: Uint8Array, at: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10 && at + i < bytes.length; i++) {
    const b = bytes[at + i]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return { value, next: at + i + 1 };
    scale *= 128;
  }
  return undefined;
}
