/** Whether a process `pid` runs (a lock's or a partial copy's owner); EPERM: alive, another user's. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
