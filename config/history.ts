/**
 * History sizes of a subset driver, shared by the workflow (which continues as new on them) and the release
 * config (which checks that the window fits them). No imports: the workflow bundle takes this file as it is.
 */

/**
 * Events a driver's run may reach by default (`release.historyBudget` overrides it, up to 10,000): the driver stops
 * starting units once its history, plus what the units in flight may still add, would pass it, drains them and
 * continues as new.
 */
export const HISTORY_BUDGET = 5_000;

/**
 * Driver events one unit costs at most: its start (2 events), 4 stage reports and its completion, each of which
 * may wake a workflow task of its own (3 events). Small windows batch little, so a unit nears this bound.
 */
export const DRIVER_EVENTS_PER_UNIT = 25;

/**
 * The largest window a history budget serves well. A run holds about historyBudget / 25 units in all and drains
 * before it continues as new, so a window of more than half that would spend much of each run draining (and a
 * window past it could never be filled). The check is on the whole window, of which each subset driver gets its
 * share: conservative for the smaller subsets.
 */
export function maxWindowFor(historyBudget: number): number {
  return Math.floor(historyBudget / (2 * DRIVER_EVENTS_PER_UNIT));
}
