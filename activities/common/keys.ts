/**
 * Object keys and checksums as the release trusts them. Every path a stage writes is derived from a key, so keys
 * are checked once, where they enter (the planner reads them from each article's metadata JSON), and a key that
 * fails is a recorded rejection of that article or figure, never an exception that retries.
 *
 * PMC's bucket keeps everything of one article version directly in its folder (`PMC<id>.<ver>/<file name>`,
 * docs/sources.md), so an object key of an article must be exactly `<its own prefix>/<one name>`:
 * no other article's folder, no `.`/`..` segment, no sub-folder, no backslash, no control character, and a name
 * short enough to be a file name here with the temporary suffix the stages add (`.partial-<pid>-<random>`).
 */

/** Longest file name (UTF-8 bytes) accepted in a key: 255 (ext4, xfs) less room for the temporary suffix. */
export const MAX_KEY_NAME_BYTES = 200;

const CONTROL = /[\u0000-\u001f\u007f]/;
const MD5 = /^[0-9a-f]{32}$/i;

export interface KeyProblem {
  /** `unsafe-key`: the key could name a path outside its folder, or no file at all; `foreign-key`: it is another article's. */
  reason: 'unsafe-key' | 'foreign-key';
  detail: string;
}

/** Why `key` is not an object of the article whose bucket folder is `prefix` (`PMC<id>.<ver>`), or null when it is. */
export function articleKeyProblem(key: string, prefix: string): KeyProblem | null {
  const unsafe = (why: string): KeyProblem => ({
    reason: 'unsafe-key',
    detail: `object key ${JSON.stringify(key)} ${why}`,
  });
  if (key.length === 0) return unsafe('is empty');
  if (CONTROL.test(key)) return unsafe('holds a control character');
  if (key.includes('\\')) return unsafe('holds a backslash');
  if (key.startsWith('/')) return unsafe('is absolute');
  const parts = key.split('/');
  if (parts.some((p) => p === '..' || p === '.')) return unsafe('has a "." or ".." segment');
  if (parts.some((p) => p === '')) return unsafe('has an empty segment');
  if (parts.length !== 2) return unsafe(`is not "<folder>/<file name>" (${parts.length} segments)`);
  if (parts[0] !== prefix)
    return {
      reason: 'foreign-key',
      detail: `object key ${JSON.stringify(key)} is in ${parts[0]}'s folder, not ${prefix}'s`,
    };
  if (Buffer.byteLength(parts[1]!, 'utf8') > MAX_KEY_NAME_BYTES)
    return unsafe(`has a file name over ${MAX_KEY_NAME_BYTES} bytes`);
  return null;
}

/** Whether `md5` is 32 hex digits (either case). */
export function isMd5(md5: string): boolean {
  return MD5.test(md5);
}

/**
 * The characters XML 1.0 forbids (C0 controls other than tab, LF and CR; U+FFFE, U+FFFF; unpaired surrogates).
 * saxes reports them and reads on; they must never reach a caption, a title or a JSON field.
 */
const XML_FORBIDDEN =
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `text` without the characters XML forbids, and how many were removed. */
export function stripXmlForbidden(text: string): { text: string; removed: number } {
  let removed = 0;
  // Vertical tab and form feed stand between words: they become a space (collapsed later), the others go.
  const out = text.replace(XML_FORBIDDEN, (ch) => {
    removed++;
    return ch === '\u000b' || ch === '\u000c' ? ' ' : '';
  });
  return { text: out, removed };
}

/** Whether `text` holds a character XML forbids (cheap test before a strip). */
export function hasXmlForbidden(text: string): boolean {
  XML_FORBIDDEN.lastIndex = 0;
  const found = XML_FORBIDDEN.test(text);
  XML_FORBIDDEN.lastIndex = 0;
  return found;
}
