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

/** The most units one driver can keep in flight within a history budget (the run's first events included). */
export function maxWindowFor(historyBudget: number): number {
  return Math.floor(historyBudget / DRIVER_EVENTS_PER_UNIT) - 1;
}
