/** A number of 16 digits or more, or one with an exponent: only these can be integers past 2^53. */
const MAY_BE_UNSAFE = /\d{16}|\d[eE]/;

/**
 * A JSON text with every number whose value is an integer past 2^53 (in
 * either sign) written as a string instead, exactly as it was written.
 *
 * The proto3 JSON mapping takes a 64-bit integer as a string or a number,
 * and a client whose JSON library writes a uint64 as a number (Go's
 * encoding/json, Python's json) writes ids that way: ids are snowflakes, past
 * 2^56. JSON.parse, under every protobuf-es read, keeps a number as a double,
 * so 122799081264250881 was read as 122799081264250880, silently: a send went
 * to another channel id than the one written (most often none of the user's;
 * once in a while a group made in the same millisecond). As a string the
 * integer form is read exactly; any other form of such a number (1.2e17) has
 * lost its digits already, and as a string it is refused, not rounded.
 */
export function quoteUnsafeIntegers(json: string): string {
  if (!MAY_BE_UNSAFE.test(json)) return json;
  let out = "";
  let copied = 0;
  let i = 0;
  while (i < json.length) {
    const c = json.charCodeAt(i);
    if (c === 0x22) {
      // A string: skipped whole, escapes and all.
      for (i++; i < json.length; i++) {
        const d = json.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
      i++;
      continue;
    }
    if (c !== 0x2d && !(c >= 0x30 && c <= 0x39)) {
      i++;
      continue;
    }
    const start = i;
    for (i++; i < json.length && isNumberChar(json.charCodeAt(i)); i++);
    const token = json.slice(start, i);
    const value = Number(token);
    if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
      out += `${json.slice(copied, start)}"${token}"`;
      copied = i;
    }
  }
  return copied === 0 ? json : out + json.slice(copied);
}

/** A character of a JSON number after its first: a digit, ".", "e", "E", "+" or "-". */
function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * connectNodeAdapter's `jsonOptions` for every public listener (the api's
 * services, SessionService on the gateway), read as a WebSocket's JSON frames
 * are: a field the message does not have, most often a misspelled one, is
 * refused as invalid_argument naming the key rather than dropped (connect-es
 * ignores unknown fields by default, and the call did something else than
 * asked); a body that is not UTF-8 is refused, as a binary one is (read
 * leniently, its bad bytes became U+FFFD and were stored so); an id written as
 * a JSON number is read exactly (quoteUnsafeIntegers), not rounded.
 */
export const STRICT_JSON_OPTIONS = {
  ignoreUnknownFields: false,
  textDecoder: { decode: (bytes?: Uint8Array) => quoteUnsafeIntegers(UTF8.decode(bytes)) },
} as const;
