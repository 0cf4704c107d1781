import type { Logger } from "pino";

/**
 * A CHAT_* variable that nothing reads: a reader that does not find its own
 * name takes its default, so `CHAT_KAFKA_BROKER` (for CHAT_KAFKA_BROKERS)
 * started a process that dialled 127.0.0.1 and said nothing about it.
 */
export interface UnknownVariable {
  name: string;
  /** The known name it is most likely a misspelling of, when one is close. */
  closest?: string;
}

const PREFIX = "CHAT_";

/**
 * The variables of `env` starting with CHAT_ that are not in `known`, each
 * with its closest known name: within two edits (a letter missed, added,
 * changed or two swapped), else one that begins with the other
 * (CHAT_TLS_CERT_FILE, CHAT_PRESENCE_SWEEP).
 */
export function unknownVariables(env: NodeJS.ProcessEnv, known: ReadonlySet<string>): UnknownVariable[] {
  return Object.keys(env)
    .filter((name) => name.startsWith(PREFIX) && !known.has(name))
    .sort()
    .map((name) => {
      const closest = closestName(name, known);
      return closest === undefined ? { name } : { name, closest };
    });
}

function closestName(name: string, known: ReadonlySet<string>): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const k of [...known].sort()) {
    const d = editDistance(name, k, 2);
    if (d <= 2 && (best === undefined || d < best.distance)) best = { name: k, distance: d };
  }
  if (best) return best.name;
  // A prefix of CHAT_ and one letter would begin half the names: not a hint.
  const prefixed = [...known]
    .filter((k) => Math.min(k.length, name.length) >= PREFIX.length + 3 && (k.startsWith(name) || name.startsWith(k)))
    .sort((a, b) => Math.abs(a.length - name.length) - Math.abs(b.length - name.length) || a.localeCompare(b));
  return prefixed[0];
}

/**
 * Optimal string alignment distance (Levenshtein with adjacent swaps), or
 * `limit + 1` once it must exceed `limit`.
 */
export function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2] + 1);
      row.push(d);
      rowMin = Math.min(rowMin, d);
    }
    if (rowMin > limit) return limit + 1;
    before = previous;
    previous = row;
  }
  return Math.min(previous[b.length], limit + 1);
}

/**
 * One warning for every CHAT_* variable no process of this system reads. A
 * warning, not a ConfigError: one environment serves every role, so an
 * unknown name may be a newer build's setting during a rolling upgrade.
 */
export function warnUnknownVariables(logger: Logger, env: NodeJS.ProcessEnv, known: ReadonlySet<string>): UnknownVariable[] {
  const unknown = unknownVariables(env, known);
  if (unknown.length > 0) {
    logger.warn({ unknownVariables: unknown }, `ignoring environment variables no chat process reads: ${namedWithHints(unknown)}`);
  }
  return unknown;
}

/** The names, each with its closest known one: "CHAT_TLS_KY (did you mean CHAT_TLS_KEY?), CHAT_X". */
export function namedWithHints(unknown: readonly UnknownVariable[]): string {
  return unknown.map((u) => (u.closest ? `${u.name} (did you mean ${u.closest}?)` : u.name)).join(", ");
}
