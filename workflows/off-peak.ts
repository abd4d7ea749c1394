/**
 * NCBI asks large jobs to run on weekends or between 21:00 and 05:00 US Eastern on weekdays.
 * Pure and deterministic (Intl with a fixed zone), so workflow code can use it with workflow time.
 */
const EASTERN = new Intl.DateTimeFormat('en-US', {
  timeZone: 'America/New_York',
  hourCycle: 'h23',
  weekday: 'short',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

function easternClock(ms: number): { weekday: string; secondsOfDay: number } {
  const p = Object.fromEntries(EASTERN.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return { weekday: p.weekday!, secondsOfDay: Number(p.hour) * 3600 + Number(p.minute) * 60 + Number(p.second) };
}

export function isOffPeak(ms: number): boolean {
  const { weekday, secondsOfDay } = easternClock(ms);
  if (weekday === 'Sat' || weekday === 'Sun') return true;
  return secondsOfDay >= 21 * 3600 || secondsOfDay < 5 * 3600;
}

/** Milliseconds from `ms` until the next off-peak moment (0 when already off-peak), exact to the second. */
export function msUntilOffPeak(ms: number): number {
  if (isOffPeak(ms)) return 0;
  // Weekday 05:00-21:00 Eastern: off-peak starts at 21:00 the same day. Step over any DST change by re-reading the clock.
  let t = ms + (21 * 3600 - easternClock(ms).secondsOfDay) * 1000;
  for (let i = 0; i < 3 && !isOffPeak(t); i++) t += (21 * 3600 - easternClock(t).secondsOfDay) * 1000;
  return t - ms;
}
