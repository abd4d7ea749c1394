import { isUtf8 } from 'node:buffer';
import { assembleArticle } from './assemble';
import { JatsReader, XmlFault, type XmlFaultKind } from './reader';
import type { ArticleRecord } from './records';

/**
 * Why an article cannot be read; the parse stage uses it as the quarantine reason.
 * - invalid-xml: truncated, mis-nested or otherwise not well-formed
 * - not-jats: well-formed, but the root is not <article>
 * - entity-limit: DOCTYPE entities expand past the limits (billion laughs, cycles)
 * - too-deep: elements nest deeper than limits.maxElementDepth
 * - too-large: over limits.maxBytes, rejected before reading
 * - empty: no bytes, or only whitespace
 * - invalid-encoding: more than limits.maxInvalidUtf8Ratio of the bytes are not UTF-8 (binary data, a mislabelled file)
 */
export type JatsFailure = XmlFaultKind | 'too-large' | 'empty' | 'invalid-encoding';

/** The article cannot be read (truncated, mis-nested, not JATS, hostile): the caller quarantines it. */
export class JatsParseError extends Error {
  override readonly name = 'JatsParseError';
  constructor(
    message: string,
    readonly line: number | null = null,
    readonly column: number | null = null,
    readonly reason: JatsFailure = 'invalid-xml',
  ) {
    super(message);
  }
}

/** Bounds that keep one hostile or freak article from taking a worker's memory or time. */
export interface JatsLimits {
  /** input bytes (UTF-16 code units for a string); larger articles are rejected unread */
  maxBytes: number;
  /** element nesting depth */
  maxElementDepth: number;
  /** nesting of entity references inside DOCTYPE entity values */
  maxEntityDepth: number;
  /** characters DOCTYPE entities may add to the document: this, or the document's own length if larger */
  maxEntityChars: number;
  /** share of the bytes in invalid UTF-8 sequences above which the file is not text at all */
  maxInvalidUtf8Ratio: number;
}

export const DEFAULT_JATS_LIMITS: Readonly<JatsLimits> = Object.freeze({
  maxBytes: 128 * 1024 * 1024,
  maxElementDepth: 1024,
  maxEntityDepth: 16,
  maxEntityChars: 1_000_000,
  maxInvalidUtf8Ratio: 0.01,
});

export interface ParseJatsOptions {
  /** used as pmcid when the XML carries no pmc/pmcid article-id (e.g. the file-list accession) */
  pmcidHint?: string;
  limits?: Partial<JatsLimits>;
  /** figure citations inside table cells count as mentions */
  tableCellMentions?: boolean;
}

/** One streaming pass over a JATS/NLM article; DTDs are never loaded and nothing is fetched. */
/** The start of the warning a record carries when characters XML forbids were removed from its text. */
export const FORBIDDEN_WARNING = 'characters XML forbids';

export function parseJats(xml: string | Buffer, opts: ParseJatsOptions = {}): ArticleRecord {
  const limits: JatsLimits = { ...DEFAULT_JATS_LIMITS, ...opts.limits };
  if (xml.length > limits.maxBytes) {
    throw new JatsParseError(
      `article too large: ${xml.length} bytes, over the limit of ${limits.maxBytes}`,
      null,
      null,
      'too-large',
    );
  }
  const source = openSource(xml, limits);
  const reader = new JatsReader(
    source.text,
    {
      maxElementDepth: limits.maxElementDepth,
      entities: { maxDepth: limits.maxEntityDepth, maxChars: Math.max(limits.maxEntityChars, xml.length) },
    },
    { tableCellMentions: opts.tableCellMentions ?? false },
  );
  try {
    for (const chunk of source.chunks()) reader.write(chunk);
    reader.end();
  } catch (err) {
    if (!(err instanceof XmlFault)) throw err;
    const { line, column } = lineAndColumn(source.text(), err.offset);
    throw new JatsParseError(`${err.message} (line ${line}, column ${column})`, line, column, err.kind);
  }
  reader.collected.warnings.push(...source.warnings);
  if (reader.forbiddenRemoved > 0) {
    const n = reader.forbiddenRemoved;
    reader.collected.warnings.push(
      `${FORBIDDEN_WARNING}: ${n} character${n === 1 ? '' : 's'} (control characters, U+FFFE/U+FFFF or unpaired surrogates) removed from the text`,
    );
  }
  return assembleArticle(reader.collected, opts.pmcidHint ?? null);
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const at = Math.max(0, Math.min(offset, text.length));
  let line = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < at; i = text.indexOf('\n', i + 1)) line++;
  return { line, column: at - (text.lastIndexOf('\n', at - 1) + 1) + 1 };
}

/** The document as saxes reads it: in pieces, plus the whole text on demand (only to place a fault). */
interface XmlSource {
  chunks(): Iterable<string>;
  text(): string;
  warnings: string[];
}

/** UTF-8 is decoded in pieces of this many bytes, so the whole text never has to exist at once. */
const CHUNK_BYTES = 1 << 20;

/**
 * Bytes to text: a UTF-16 byte-order mark, else the declared encoding, else UTF-8 (the only one streamed).
 * Invalid UTF-8 is repaired with U+FFFD and noted in the record's warnings, unless so much of the file is
 * invalid that it is not UTF-8 text at all. A blank file is an error; a blank line before the XML
 * declaration (common in saved downloads) is dropped.
 */
function openSource(xml: string | Buffer, limits: JatsLimits): XmlSource {
  if (typeof xml === 'string') return wholeText(xml, []);
  if (xml[0] === 0xfe && xml[1] === 0xff) return wholeText(new TextDecoder('utf-16be').decode(xml), []);
  if (xml[0] === 0xff && xml[1] === 0xfe) return wholeText(new TextDecoder('utf-16le').decode(xml), []);
  const declared = /^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(
    xml.subarray(0, 200).toString('latin1'),
  );
  const label = safeLabel(declared?.[1]?.toLowerCase() ?? 'utf-8');
  // A declaration readable as single bytes is not UTF-16, whatever it says.
  if (label !== 'utf-8' && !label.startsWith('utf-16')) return wholeText(new TextDecoder(label).decode(xml), []);

  let start = xml[0] === 0xef && xml[1] === 0xbb && xml[2] === 0xbf ? 3 : 0;
  let first = start;
  while (first < xml.length && isBlankByte(xml[first] as number)) first++;
  if (first === xml.length) throw blank(xml.length);
  if (first > start && xml.subarray(first, first + 5).toString('latin1') === '<?xml') start = first;
  const body = xml.subarray(start);

  if (isUtf8(body)) return validUtf8(body);
  const invalid = countOf(body.toString('utf8'), '\ufffd') - countOfBytes(body, REPLACEMENT_BYTES);
  if (invalid > limits.maxInvalidUtf8Ratio * body.length) {
    throw new JatsParseError(
      `not UTF-8 text: ${invalid} invalid byte sequences in ${body.length} bytes`,
      null,
      null,
      'invalid-encoding',
    );
  }
  const warnings = [`invalid UTF-8: ${invalid} byte sequence${invalid === 1 ? '' : 's'} replaced by U+FFFD`];
  return {
    *chunks() {
      const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
      for (let at = 0; at < body.length; at += CHUNK_BYTES) {
        const piece = decoder.decode(body.subarray(at, at + CHUNK_BYTES), { stream: true });
        if (piece) yield piece;
      }
      const rest = decoder.decode();
      if (rest) yield rest;
    },
    text: () => new TextDecoder('utf-8', { ignoreBOM: true }).decode(body),
    warnings,
  };
}

/**
 * Valid UTF-8 (nearly every article): Buffer's decoder, over twice as fast as a streaming TextDecoder, on pieces
 * cut at character boundaries. Both give the same text for valid input; invalid input keeps the TextDecoder.
 */
function validUtf8(body: Buffer): XmlSource {
  return {
    *chunks() {
      for (let at = 0; at < body.length;) {
        let end = Math.min(at + CHUNK_BYTES, body.length);
        while (end < body.length && ((body[end] as number) & 0xc0) === 0x80) end--; // not inside a character
        yield body.toString('utf8', at, end);
        at = end;
      }
    },
    text: () => body.toString('utf8'),
    warnings: [],
  };
}

function wholeText(decoded: string, warnings: string[]): XmlSource {
  let text = decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded;
  if (text.trim() === '') throw blank(text.length);
  if (/^\s+<\?xml/.test(text)) text = text.trimStart();
  return { chunks: () => [text], text: () => text, warnings };
}

function blank(length: number): JatsParseError {
  return new JatsParseError(length === 0 ? 'empty file' : 'file holds only whitespace', null, null, 'empty');
}

const isBlankByte = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

const REPLACEMENT_BYTES = Buffer.from('\ufffd', 'utf8');

function countOf(text: string, char: string): number {
  let n = 0;
  for (let i = text.indexOf(char); i >= 0; i = text.indexOf(char, i + 1)) n++;
  return n;
}

function countOfBytes(buf: Buffer, needle: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(needle); i >= 0; i = buf.indexOf(needle, i + needle.length)) n++;
  return n;
}

function safeLabel(label: string): string {
  try {
    return new TextDecoder(label).encoding;
  } catch {
    return 'utf-8';
  }
}
