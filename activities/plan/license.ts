import type { Subset } from '../../config/release';

// PMC's official grouping (docs/sources.md), matched exactly: an unknown spelling is "other".
const COMMERCIAL = new Set(['CC0', 'CC BY', 'CC BY-SA', 'CC BY-ND']);
const NONCOMMERCIAL = new Set(['CC BY-NC', 'CC BY-NC-SA', 'CC BY-NC-ND']);

export function licenseGroup(licenseCode: string | null | undefined): Subset {
  if (licenseCode && COMMERCIAL.has(licenseCode)) return 'commercial';
  if (licenseCode && NONCOMMERCIAL.has(licenseCode)) return 'noncommercial';
  return 'other';
}
