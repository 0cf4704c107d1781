import { createPrivateKey, sign, type KeyObject } from "node:crypto";

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** A compact JWS: ES256 (APNs provider tokens) or RS256 (Google service accounts). */
export function signJwt(alg: "ES256" | "RS256", key: KeyObject | string, header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const k = typeof key === "string" ? createPrivateKey(key) : key;
  const input = `${b64({ alg, typ: "JWT", ...header })}.${b64(claims)}`;
  const sig =
    alg === "ES256" ? sign("sha256", Buffer.from(input), { key: k, dsaEncoding: "ieee-p1363" }) : sign("sha256", Buffer.from(input), k);
  return `${input}.${sig.toString("base64url")}`;
}
