/** As a shell takes it back whole: in single quotes, each ' in it closed, escaped and opened again. */
export function shellQuoted(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** An argument as a shell takes it back: as it is when plain, else quoted (a hint to paste must run as shown). */
export function shellWord(arg: string): string {
  // A # starting a word starts a comment.
  return /^[\w@.:/=+,-][\w@#.:/=+,-]*$/u.test(arg) ? arg : shellQuoted(arg);
}
