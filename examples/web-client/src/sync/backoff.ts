/**
 * Reconnect delays: 0.5 s, 1 s, 2 s, 4 s, 8 s, then 10 s, each with up to
 * ±20 % jitter so that many clients do not come back in lock step after a
 * server restart.
 */
export const BACKOFF_START_MS = 500;
export const BACKOFF_MAX_MS = 10_000;

export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** Math.max(0, Math.min(attempt, 30)));
  const jitter = 1 + (random() * 0.4 - 0.2);
  return Math.round(Math.min(BACKOFF_MAX_MS, base * jitter));
}
