/**
 * The session's heartbeat clock, in a dedicated worker: Chrome throttles the
 * timers of a page hidden for a while to one wake-up a minute, and a
 * heartbeat that late let the server end the session and presence flap
 * offline every minute for a chat left in a background tab. A worker's
 * timers are not throttled so.
 *
 * Told `{ every: ms }` it ticks every `ms` (anew from now); told `{ every: 0 }` it stops.
 */
let timer: ReturnType<typeof setInterval> | undefined;

addEventListener("message", (ev: MessageEvent<{ every: number }>) => {
  clearInterval(timer);
  timer = undefined;
  if (ev.data.every > 0) timer = setInterval(() => postMessage("tick"), ev.data.every);
});
