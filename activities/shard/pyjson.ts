/**
 * Byte-compatible port of Python 3 `json.dumps(obj)` with its defaults
 * (ensure_ascii=True, separators ", " / ": ", allow_nan=True, no sorting, no indent).
 * The published sample `.json` members were produced that way (docs/dataset-format.md), and
 * JSON.stringify differs in separators, non-ASCII handling and float formatting.
 *
 * Numbers: JS has one number type, Python has int and float. A plain JS number that is
 * integral is written as a Python int (`1.0` -> `1`); wrap a value with `pyFloat(x)` to get
 * Python float repr (`1.0`, `1e-05`, `1e+16`, `NaN`, `Infinity`). bigint is written as an int.
 *
 * Key order: plain objects are written in JS property order, which puts integer-like keys
 * ("0", "17") first in ascending order. Where a dict may have such keys and Python's insertion
 * order matters, pass a Map: Map entries are written in insertion order.
 */

/** Marks a value as a Python float. */
export class PyFloat {
  constructor(readonly value: number) {}
}

export function pyFloat(value: number): PyFloat {
  return new PyFloat(value);
}

/** Python `repr(float)`: shortest round-trip digits, exponent when exp < -4 or exp >= 16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  // toExponential() without digits gives the shortest digits that round-trip, like Python's repr.
  const [mant, expStr] = x.toExponential().split('e');
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intLen = exp + 1;
  if (digits.length <= intLen) return `${sign}${digits}${'0'.repeat(intLen - digits.length)}.0`;
  return `${sign}${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
}

/**
 * Python's ESCAPE_ASCII: everything outside printable ASCII (space..~) is escaped per UTF-16
 * code unit, which is exactly how Python writes astral characters (surrogate pairs) and lone
 * surrogates. JSON.stringify (native, and most of the shard stage's strings are long article texts) already writes
 * '"', '\\' and the C0 controls as Python does (\b \f \n \r \t, else \u00xx in lower case) and lone surrogates as
 * \udxxx; what it leaves as it is (DEL, and everything above it) is escaped here.
 */
export function pyJsonString(s: string): string {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function intRepr(x: number): string {
  // BigInt avoids JS exponent notation for integral values >= 1e21; -0 is int 0.
  return Number.isSafeInteger(x) ? String(x === 0 ? 0 : x) : BigInt(x).toString();
}

/** Python converts non-str dict keys: int -> str(int), float -> repr, bool -> true/false, None -> null. */
function keyString(k: unknown, at: string): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number') return Number.isInteger(k) ? intRepr(k) : pyFloatRepr(k);
  if (k instanceof PyFloat) return pyFloatRepr(k.value);
  if (typeof k === 'bigint') return k.toString();
  if (typeof k === 'boolean') return k ? 'true' : 'false';
  if (k === null) return 'null';
  throw new TypeError(`keys must be str, int, float, bool or None, not ${describe(k)} (at ${at})`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Serialises `value` exactly as Python 3 `json.dumps(value)` would. Throws on values Python could not hold. */
export function pyJsonDumps(value: unknown): string {
  const out: string[] = [];
  const stack = new Set<object>();

  const enter = (obj: object, at: string): void => {
    // Python raises ValueError("Circular reference detected"); we do the same rather than recurse forever.
    if (stack.has(obj)) throw new TypeError(`circular reference detected (at ${at})`);
    stack.add(obj);
  };

  const emit = (v: unknown, at: string): void => {
    if (v === null) out.push('null');
    else if (v === true) out.push('true');
    else if (v === false) out.push('false');
    else if (typeof v === 'string') out.push(pyJsonString(v));
    else if (typeof v === 'number') out.push(Number.isInteger(v) ? intRepr(v) : pyFloatRepr(v));
    else if (typeof v === 'bigint') out.push(v.toString());
    else if (v instanceof PyFloat) out.push(pyFloatRepr(v.value));
    else if (Array.isArray(v)) {
      enter(v, at);
      out.push('[');
      v.forEach((item, i) => {
        if (i > 0) out.push(', ');
        emit(item, `${at}[${i}]`);
      });
      out.push(']');
      stack.delete(v);
    } else if (v instanceof Map || (typeof v === 'object' && isPlainObject(v))) {
      enter(v, at);
      const entries: Iterable<[unknown, unknown]> = v instanceof Map ? v.entries() : Object.entries(v);
      out.push('{');
      let first = true;
      for (const [k, item] of entries) {
        const key = keyString(k, at);
        if (!first) out.push(', ');
        first = false;
        out.push(pyJsonString(key), ': ');
        emit(item, `${at}.${key}`);
      }
      out.push('}');
      stack.delete(v);
    } else {
      // undefined, functions, Buffers, Dates...: Python would raise TypeError, and silently
      // dropping a key (as JSON.stringify does) would change the published bytes.
      throw new TypeError(`value of type ${describe(v)} is not JSON serializable (at ${at})`);
    }
  };

  emit(value, '$');
  return out.join('');
}
