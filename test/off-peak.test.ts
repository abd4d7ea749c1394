import * as assert from 'node:assert/strict';
import { isOffPeak, msUntilOffPeak } from '../workflows/off-peak';

// Hand-computed instants: US Eastern is UTC-5 in winter (EST) and UTC-4 in summer (EDT).
describe("NCBI's off-peak window (weekends, or 21:00-05:00 US Eastern on weekdays)", () => {
  it('a weekday afternoon is peak; the wait ends at 21:00 Eastern', () => {
    const wed1500est = Date.parse('2026-11-25T20:00:00Z'); // Wed 15:00 EST
    assert.equal(isOffPeak(wed1500est), false);
    assert.equal(msUntilOffPeak(wed1500est), 6 * 3600_000);
    assert.equal(wed1500est + msUntilOffPeak(wed1500est), Date.parse('2026-11-26T02:00:00Z'));
  });

  it('weekday nights are off-peak on both sides of midnight, and 05:00 starts peak again', () => {
    assert.equal(isOffPeak(Date.parse('2026-11-26T02:00:00Z')), true); // Wed 21:00 EST
    assert.equal(isOffPeak(Date.parse('2026-11-26T09:59:59Z')), true); // Thu 04:59:59 EST
    assert.equal(isOffPeak(Date.parse('2026-11-26T10:00:00Z')), false); // Thu 05:00 EST
    assert.equal(isOffPeak(Date.parse('2026-11-26T01:59:59Z')), false); // Wed 20:59:59 EST
  });

  it('weekends are off-peak all day, in Eastern time (not UTC)', () => {
    assert.equal(isOffPeak(Date.parse('2026-11-28T17:00:00Z')), true); // Sat 12:00 EST
    assert.equal(isOffPeak(Date.parse('2026-11-30T04:00:00Z')), true); // Sun 23:00 EST (Mon in UTC)
    assert.equal(isOffPeak(Date.parse('2026-11-30T12:00:00Z')), false); // Mon 07:00 EST
  });

  it('uses daylight saving time in summer', () => {
    const wed2030edt = Date.parse('2026-07-16T00:30:00Z'); // Wed 20:30 EDT
    assert.equal(isOffPeak(wed2030edt), false);
    assert.equal(msUntilOffPeak(wed2030edt), 30 * 60_000);
    assert.equal(msUntilOffPeak(Date.parse('2026-07-16T01:00:00Z')), 0); // Wed 21:00 EDT
  });

  it('is 0 when already off-peak', () => {
    assert.equal(msUntilOffPeak(Date.parse('2026-11-28T17:00:00Z')), 0);
  });
});
