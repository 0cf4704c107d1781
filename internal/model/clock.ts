/**
 * Milliseconds on the monotonic clock, for durations and deadlines: the wall
 * clock is stepped (NTP, a restored VM) by minutes or hours, which stretched
 * or cut short every wait timed on it. One function for all: a default
 * written as an arrow was a closure per object (two per idle session).
 */
export const monotonicNow = (): number => performance.now();
