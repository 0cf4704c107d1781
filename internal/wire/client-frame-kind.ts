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
    if (tag < 0) return undefined;
    at = varintEnd;
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0) return undefined;
    switch (wireType) {
      case 0: {
        if (readVarint(bytes, at) < 0) return undefined;
        at = varintEnd;
        break;
      }
      case 1:
        at += 8;
        break;
      case 2: {
        const len = readVarint(bytes, at);
        if (len < 0) return undefined;
        at = varintEnd + len;
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

/**
 * Where the last varint read ended: readVarint's second answer, kept here
 * rather than in an object per tag (this runs on every frame a device sends).
 */
let varintEnd = 0;

/** The varint at `at`, or -1 when it is cut short: exact up to 2^53, which any tag or length here is; larger values (a ref) are only skipped. */
function readVarint(bytes: Uint8Array, at: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10 && at + i < bytes.length; i++) {
    const b = bytes[at + i]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      varintEnd = at + i + 1;
      return value;
    }
    scale *= 128;
  }
  return -1;
}
