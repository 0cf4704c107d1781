import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createSecureContext } from "node:tls";
import type { EnvReader } from "./env.js";

export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** PEM: the certificate chain, leaf first. */
  cert: Buffer;
  /** PEM: the private key. */
  key: Buffer;
  /** CHAT_TLS_RELOAD_S: how often both files are read again for a renewed pair (internal/config/tls-reload.ts). */
  reloadMs: number;
}

/** CHAT_TLS_CERT and CHAT_TLS_KEY: both or neither, readable PEM files that belong together. */
export function readTls(r: EnvReader): TlsFiles | undefined {
  // certbot and cert-manager renew days before expiry: a poll a minute at most is prompt enough.
  const reloadMs = r.int("CHAT_TLS_RELOAD_S", 30, 1, 3600) * 1000;
  const certPath = r.string("CHAT_TLS_CERT", "");
  const keyPath = r.string("CHAT_TLS_KEY", "");
  const problems = r.problems;
  if (!certPath && !keyPath) return undefined;
  if (!certPath || !keyPath) {
    problems.push(`${certPath ? "CHAT_TLS_KEY" : "CHAT_TLS_CERT"} is not set: TLS needs both CHAT_TLS_CERT and CHAT_TLS_KEY`);
    return undefined;
  }
  const read = (name: string, path: string): Buffer | undefined => {
    try {
      return readFileSync(path);
    } catch (err) {
      problems.push(`${name}=${JSON.stringify(path)}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      return undefined;
    }
  };
  const cert = read("CHAT_TLS_CERT", certPath);
  const key = read("CHAT_TLS_KEY", keyPath);
  if (!cert || !key) return undefined;
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    problems.push(
      `CHAT_TLS_CERT=${JSON.stringify(certPath)}, CHAT_TLS_KEY=${JSON.stringify(keyPath)}: not a usable PEM certificate and matching key (${(err as Error).message})`,
    );
    return undefined;
  }
  return { certPath: resolve(certPath), keyPath: resolve(keyPath), cert, key, reloadMs };
}

/**
 * For the processes with no public listener (chat servers, pipeline workers,
 * presence, notifier): their gRPC and ops ports face the cluster's own
 * network only. Set on one of them, CHAT_TLS_* would change nothing, which a
 * reader of the README could not tell from TLS.
 */
export function refuseTls(r: EnvReader, role: string): void {
  for (const name of ["CHAT_TLS_CERT", "CHAT_TLS_KEY"]) {
    if (r.string(name, "") !== "") {
      r.problems.push(`${name}: the ${role} has no public listener and serves its cluster-internal ports in plaintext; TLS goes on the api and the gateways (or chatd), so unset it here`);
    }
  }
}
