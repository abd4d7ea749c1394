/**
 * IEEE 754 binary16 ("half", ONNX FLOAT16) <-> binary32 conversion on raw bit patterns.
 *
 * Node 20 has no Float16Array (and onnxruntime-common 1.30 only uses one when globalThis.Float16Array
 * exists): a 'float16' ort.Tensor then takes and returns a Uint16Array of half bit patterns. On a runtime
 * that does have Float16Array, ort accepts a Uint16Array for 'float16' too (it reinterprets the buffer)
 * but returns Float16Array outputs; `halfToFloat32Array` accepts both.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The half bit pattern nearest to `value` (round to nearest, ties to even; overflow -> Inf, NaN stays NaN). */
export function float32ToHalfBits(value: number): number {
  f32[0] = value; // first rounds to binary32, like any float32 -> float16 cast
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf, or a quiet NaN
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: Inf
  if (e <= 0) {
    // Subnormal half (or zero): value = r * 2^-24 and value = M * 2^(e - 14) * 2^-24 for the 24-bit significand M.
    if (e < -10) return sign; // below half the smallest subnormal: signed zero
    mant |= 0x800000;
    const shift = 14 - e;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    let r = mant >>> shift;
    if (rem > halfway || (rem === halfway && (r & 1) === 1)) r++; // may carry into the smallest normal: still right
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r++; // a carry into the exponent is correct, up to Inf
  return sign | r;
}

/** The binary32 value of a half bit pattern (exact: every half is a float32). */
export function halfBitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m !== 0 ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

let decodeTable: Float32Array | undefined;
/** All 65,536 half values as float32 (256 KiB, built on first use). */
function table(): Float32Array {
  if (!decodeTable) {
    decodeTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) decodeTable[h] = halfBitsToFloat32(h);
  }
  return decodeTable;
}

export function float32ToHalfArray(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToHalfBits(values[i]!);
  return out;
}

/**
 * Half data from an ort 'float16' tensor as float32: a Uint16Array of bit patterns (no Float16Array on this
 * runtime), or a Float16Array-like whose elements are already numbers.
 */
export function halfToFloat32Array(
  data: ArrayLike<number> & { BYTES_PER_ELEMENT?: number },
  from = 0,
  to = data.length,
): Float32Array {
  const out = new Float32Array(to - from);
  if (data instanceof Uint16Array) {
    const t = table();
    for (let i = from; i < to; i++) out[i - from] = t[data[i]!]!;
  } else {
    for (let i = from; i < to; i++) out[i - from] = data[i]!;
  }
  return out;
}
