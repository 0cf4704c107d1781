import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Server as NetServer } from "node:net";
import { createSecureContext, Server as TlsServer } from "node:tls";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import type { TlsFiles } from "./tls.js";

/** A certificate ending sooner than this is warned of: certbot and cert-manager renew 30 days ahead, so one this close has missed its renewals. */
export const EXPIRY_WARNING_MS = 14 * 86_400_000;

export interface CertificateValidity {
  notBefore: Date;
  notAfter: Date;
  /** Hex, as `getPeerCertificate().serialNumber` gives it. */
  serial: string;
}

/** The leaf's (the chain's first certificate's) validity. */
export function certificateValidity(pem: Buffer): CertificateValidity {
  const x = new X509Certificate(pem);
  return { notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo), serial: x.serialNumber };
}

type Standing = "valid" | "expiring" | "expired" | "not yet valid";

function standing(v: CertificateValidity, now: number): Standing {
  if (now < v.notBefore.getTime()) return "not yet valid";
  if (now >= v.notAfter.getTime()) return "expired";
  if (v.notAfter.getTime() - now < EXPIRY_WARNING_MS) return "expiring";
  return "valid";
}

export interface TlsReloader {
  /** Reads both files now, as each poll does. */
  check(): void;
  /** The certificate in service. */
  readonly validity: CertificateValidity;
  close(): void;
}

/**
 * Keeps the TLS listeners of the process (`servers`: every tls.Server among
 * them, which https and HTTP/2 secure servers are) serving what
 * CHAT_TLS_CERT and CHAT_TLS_KEY hold now. Renewals (certbot, cert-manager)
 * rewrite the files in place; read once at start, the process went on
 * serving the old certificate until restarted, past its expiry. A changed
 * pair is taken for new handshakes only (setSecureContext): connections
 * already open keep theirs. A pair that does not load (a key of another
 * certificate, one file rewritten before the other) leaves the one in
 * service, with one warning per pair, and is read again at the next poll.
 *
 * The certificate in service is checked at start, at each reload and each
 * poll: expired or not yet valid is an error log, ending within 14 days a
 * warning, each logged again only when that changes (or at a reload). Its
 * end is the gauge chat_tls_certificate_expiry_timestamp_seconds, for an
 * alert that fires before any client fails. An expired certificate does not
 * stop the start: the process then picks up the renewal without a restart,
 * and its probes and /metrics stay up to say what is wrong.
 */
export function watchTlsFiles(
  files: TlsFiles,
  options: { servers: NetServer[]; logger: Logger; registry?: Registry; intervalMs?: number; now?: () => number },
): TlsReloader {
  const { logger } = options;
  const now = options.now ?? Date.now;
  const servers = options.servers.filter((s): s is TlsServer => s instanceof TlsServer);
  let cert = files.cert;
  let key = files.key;
  let validity = certificateValidity(cert);
  let told: Standing | undefined;
  // What was last warned of (a refused pair, an unreadable file), so each poll does not say it again.
  let warned: string | undefined;

  const gauge = new Gauge({
    name: "chat_tls_certificate_expiry_timestamp_seconds",
    help: "When the TLS certificate in service (CHAT_TLS_CERT) expires, in seconds since the epoch",
    registers: options.registry ? [options.registry] : [],
  });
  gauge.set(validity.notAfter.getTime() / 1000);

  const tell = (always: boolean) => {
    const s = standing(validity, now());
    if (s === told && !always) return;
    told = s;
    const fields = { variable: "CHAT_TLS_CERT", file: files.certPath, notBefore: validity.notBefore.toISOString(), notAfter: validity.notAfter.toISOString() };
    if (s === "expired") logger.error(fields, `TLS certificate ${files.certPath} expired on ${fields.notAfter}: clients refuse it until CHAT_TLS_CERT is renewed`);
    else if (s === "not yet valid") logger.error(fields, `TLS certificate ${files.certPath} is not valid until ${fields.notBefore}: clients refuse it until then (or this clock is wrong)`);
    else if (s === "expiring") logger.warn(fields, `TLS certificate ${files.certPath} expires on ${fields.notAfter}, within 14 days: renew CHAT_TLS_CERT`);
  };

  const warnOnce = (what: string, fields: object, msg: string) => {
    if (warned === what) return;
    warned = what;
    logger.warn({ CHAT_TLS_CERT: files.certPath, CHAT_TLS_KEY: files.keyPath, ...fields }, msg);
  };

  const check = () => {
    let nextCert: Buffer;
    let nextKey: Buffer;
    try {
      nextCert = readFileSync(files.certPath);
      nextKey = readFileSync(files.keyPath);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const variable = e.path === files.keyPath ? "CHAT_TLS_KEY" : "CHAT_TLS_CERT";
      warnOnce(`read ${e.path} ${e.code}`, { err }, `${variable}: cannot read ${e.path} (${e.code ?? e.message}): the certificate in service stays, read again at the next poll`);
      return tell(false);
    }
    if (nextCert.equals(cert) && nextKey.equals(key)) {
      warned = undefined;
      return tell(false);
    }
    const pair = `pair ${nextCert.toString("base64")} ${nextKey.toString("base64")}`;
    if (warned === pair) return tell(false);
    let next: CertificateValidity;
    try {
      createSecureContext({ cert: nextCert, key: nextKey });
      next = certificateValidity(nextCert);
    } catch (err) {
      warnOnce(pair, { err }, "CHAT_TLS_CERT / CHAT_TLS_KEY changed but are not a usable PEM certificate and matching key (one rewritten before the other?): the certificate in service stays, read again at the next poll");
      return tell(false);
    }
    for (const server of servers) server.setSecureContext({ cert: nextCert, key: nextKey });
    cert = nextCert;
    key = nextKey;
    validity = next;
    warned = undefined;
    gauge.set(validity.notAfter.getTime() / 1000);
    logger.info({ file: files.certPath, serial: validity.serial, notAfter: validity.notAfter.toISOString() }, "TLS certificate reloaded from CHAT_TLS_CERT and CHAT_TLS_KEY");
    tell(true);
  };

  tell(true);
  const timer = setInterval(() => {
    try {
      check();
    } catch (err) {
      logger.warn({ err }, "TLS certificate check failed; tried again at the next poll");
    }
  }, options.intervalMs ?? files.reloadMs);
  timer.unref();
  return {
    check,
    get validity() {
      return validity;
    },
    close: () => clearInterval(timer),
  };
}
