import { assembleArticle } from './assemble';
import { JatsReader, XmlFault } from './reader';
import type { ArticleRecord } from './records';

/** The article cannot be read (truncated, mis-nested, not JATS): the caller quarantines it. */
export class JatsParseError extends Error {
  override readonly name = 'JatsParseError';
  constructor(message: string, readonly line: number | null = null, readonly column: number | null = null) {
    super(message);
  }
}

export interface ParseJatsOptions {
  /** used as pmcid when the XML carries no pmc/pmcid article-id (e.g. the file-list accession) */
  pmcidHint?: string;
}

/** One streaming pass over a JATS/NLM article; DTDs are never loaded and nothing is fetched. */
export function parseJats(xml: string | Buffer, opts: ParseJatsOptions = {}): ArticleRecord {
  const text = decodeXml(xml);
  const reader = new JatsReader(text);
  try {
    reader.run();
  } catch (err) {
    if (!(err instanceof XmlFault)) throw err;
    const { line, column } = lineAndColumn(text, err.offset);
    throw new JatsParseError(`${err.message} (line ${line}, column ${column})`, line, column);
  }
  return assembleArticle(reader.collected, opts.pmcidHint ?? null);
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const at = Math.max(0, Math.min(offset, text.length));
  let line = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < at; i = text.indexOf('\n', i + 1)) line++;
  return { line, column: at - (text.lastIndexOf('\n', at - 1) + 1) + 1 };
}

function decodeXml(xml: string | Buffer): string {
  let text: string;
  if (typeof xml === 'string') text = xml;
  else if (xml[0] === 0xfe && xml[1] === 0xff) text = new TextDecoder('utf-16be').decode(xml);
  else if (xml[0] === 0xff && xml[1] === 0xfe) text = new TextDecoder('utf-16le').decode(xml);
  else {
    const declared = /^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(xml.subarray(0, 200).toString('latin1'));
    const label = declared?.[1]?.toLowerCase() ?? 'utf-8';
    text = new TextDecoder(label === 'utf8' ? 'utf-8' : safeLabel(label)).decode(xml);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  // A blank line before the XML declaration is common in saved downloads and harmless.
  return /^\s+<\?xml/.test(text) ? text.trimStart() : text;
}

function safeLabel(label: string): string {
  try {
    new TextDecoder(label);
    return label;
  } catch {
    return 'utf-8';
  }
}

