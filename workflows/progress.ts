/**
 * Per-stage progress of units, shared by the unit workflow (which reports), the subset drivers and the release
 * (which count) and the CLI (which prints). Pure and deterministic: no I/O, no clock of its own.
 *
 * A unit goes fetch -> parse -> images (figure media download and normalisation) -> annotate -> shard (tar and
 * parquet); enrich (the unit's PubMed batches) runs beside images and annotate and ends before shard.
 */

export const UNIT_STAGES = ['fetch', 'parse', 'enrich', 'images', 'annotate', 'shard'] as const;
export type UnitStage = (typeof UNIT_STAGES)[number];

/** The stages a unit passes one after the other (enrich runs beside images and annotate). */
export const MAIN_STAGES: readonly UnitStage[] = ['fetch', 'parse', 'images', 'annotate', 'shard'];

/** Rejections per stage: quarantine records (fetch, parse, images, annotate); for enrich, PMIDs PubMed did not return. */
export type StageRejections = Record<UnitStage, number>;

/** What a unit tells its subset driver when it enters a stage, and what a finished unit returns. */
export interface UnitReport {
  unitId: string;
  /** The stage the unit is in now. */
  stage: UnitStage;
  /** Whether every PubMed batch of the unit has finished. */
  enrichDone: boolean;
  /** Rejections so far, per stage. */
  rejected: StageRejections;
}

/** Counts that survive a subset driver's continue-as-new: finished and failed units only. */
export interface StageTotals {
  done: number;
  failed: number;
  rejected: number;
}

export interface StageProgress extends StageTotals {
  inFlight: number;
  /** Units through this stage per hour, since the first unit started (null before one is through). */
  unitsPerHour: number | null;
  /** Seconds until every unit is through this stage at that rate (null without a rate). */
  etaSeconds: number | null;
}

export type StageTable = Record<UnitStage, StageProgress>;

export function noRejections(): StageRejections {
  return { fetch: 0, parse: 0, enrich: 0, images: 0, annotate: 0, shard: 0 };
}

export function emptyTotals(): Record<UnitStage, StageTotals> {
  return Object.fromEntries(UNIT_STAGES.map((s) => [s, { done: 0, failed: 0, rejected: 0 }])) as Record<
    UnitStage,
    StageTotals
  >;
}

/** Whether a unit reported in `report` is through `stage`. */
function through(report: UnitReport, stage: UnitStage): boolean {
  if (stage === 'enrich') return report.enrichDone;
  return MAIN_STAGES.indexOf(report.stage) > MAIN_STAGES.indexOf(stage);
}

function inStage(report: UnitReport, stage: UnitStage): boolean {
  if (stage === 'enrich') return !report.enrichDone && MAIN_STAGES.indexOf(report.stage) > MAIN_STAGES.indexOf('parse');
  return report.stage === stage;
}

/** The later of two reports of one unit: signals may arrive out of order, a stage never goes back. */
export function laterReport(a: UnitReport | undefined, b: UnitReport): UnitReport {
  if (!a) return b;
  const ia = MAIN_STAGES.indexOf(a.stage);
  const ib = MAIN_STAGES.indexOf(b.stage);
  if (ib > ia || (ib === ia && b.enrichDone && !a.enrichDone)) return b;
  return a;
}

/** A unit finished: every stage is done for it, and its rejections count. */
export function addFinished(
  totals: Record<UnitStage, StageTotals>,
  rejected: Partial<StageRejections> | undefined,
): void {
  for (const s of UNIT_STAGES) {
    totals[s].done++;
    totals[s].rejected += rejected?.[s] ?? 0;
  }
}

/**
 * A unit failed: the stages it was through are done, the one it was in failed, the later ones never ran (enrich,
 * if it had not finished, is neither: the failure is the main stage's).
 */
export function addFailed(totals: Record<UnitStage, StageTotals>, last: UnitReport | undefined): void {
  const report: UnitReport = last ?? { unitId: '', stage: 'fetch', enrichDone: false, rejected: noRejections() };
  for (const s of UNIT_STAGES) {
    if (through(report, s)) totals[s].done++;
    else if (s !== 'enrich' && report.stage === s) totals[s].failed++;
    totals[s].rejected += report.rejected[s] ?? 0;
  }
}

/**
 * The per-stage table: finished and failed units from `totals`, in-flight units from their latest reports, and
 * a rate per stage since `startedAt` (ms) as of `now` (ms), with the time left for `units` units.
 */
export function stageTable(
  totals: Record<UnitStage, StageTotals>,
  live: Iterable<UnitReport>,
  units: number,
  startedAt: number | null,
  now: number,
): StageTable {
  const table = Object.fromEntries(
    UNIT_STAGES.map((s) => [
      s,
      { ...totals[s], inFlight: 0, unitsPerHour: null, etaSeconds: null } satisfies StageProgress,
    ]),
  ) as StageTable;
  for (const r of live) {
    for (const s of UNIT_STAGES) {
      if (through(r, s)) table[s].done++;
      else if (inStage(r, s)) table[s].inFlight++;
      table[s].rejected += r.rejected[s] ?? 0;
    }
  }
  const hours = startedAt === null ? 0 : (now - startedAt) / 3_600_000;
  for (const s of UNIT_STAGES) {
    const row = table[s];
    if (hours > 0 && row.done > 0) {
      row.unitsPerHour = row.done / hours;
      row.etaSeconds = Math.max(0, Math.round(((units - row.done - row.failed) / row.unitsPerHour) * 3600));
    }
  }
  return table;
}

/** Adds the tables of several subsets into one (rates add up; the ETA is the slowest subset's). */
export function mergeTables(tables: StageTable[]): StageTable {
  const out = Object.fromEntries(
    UNIT_STAGES.map((s) => [
      s,
      { done: 0, failed: 0, rejected: 0, inFlight: 0, unitsPerHour: null, etaSeconds: null } as StageProgress,
    ]),
  ) as StageTable;
  for (const t of tables) {
    for (const s of UNIT_STAGES) {
      const o = out[s];
      const r = t[s];
      o.done += r.done;
      o.failed += r.failed;
      o.rejected += r.rejected;
      o.inFlight += r.inFlight;
      if (r.unitsPerHour !== null) o.unitsPerHour = (o.unitsPerHour ?? 0) + r.unitsPerHour;
      if (r.etaSeconds !== null) o.etaSeconds = Math.max(o.etaSeconds ?? 0, r.etaSeconds);
    }
  }
  return out;
}
