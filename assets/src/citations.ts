// Citations in assistant replies: markers like `[1]` or `[1, 2]` that name one of the
// reply's sources become links to the cited passage; any other bracketed number stays
// text. Linking runs on the sanitised HTML (text nodes only, never inside code or an
// existing link), so markdown syntax and code samples are never rewritten.

import { documentHref } from './router';
import type { Source } from './types';

export type CitePart = { kind: 'text'; text: string } | { kind: 'cite'; n: number; text: string };

// One to three digits, comma-separated: `[1]`, `[1,2]`, `[1, 2, 3]`.
const MARKER = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/;

/**
 * Splits text at citation markers whose numbers `known` accepts. A marker with one
 * known number becomes one part (`[1]`, brackets included, so the link is easy to hit);
 * in a list each known number is its own part and the rest stays text. Adjacent text
 * is merged, so text without citations comes back as one part.
 */
export function splitCitations(text: string, known: (n: number) => boolean): CitePart[] {
  const parts: CitePart[] = [];
  const pushText = (t: string) => {
    if (!t) return;
    const last = parts[parts.length - 1];
    if (last?.kind === 'text') last.text += t;
    else parts.push({ kind: 'text', text: t });
  };
  const re = new RegExp(MARKER.source, 'g');
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const numbers = m[1].split(',').map((x) => Number(x.trim()));
    if (!numbers.some(known)) continue;
    pushText(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (numbers.length === 1) {
      parts.push({ kind: 'cite', n: numbers[0], text: m[0] });
      continue;
    }
    // Keep the author's separators: walk the list text, linking each known number.
    pushText('[');
    const pieces = m[1].split(/(\s*,\s*)/);
    for (const piece of pieces) {
      const n = Number(piece);
      if (/^\d+$/.test(piece) && known(n)) parts.push({ kind: 'cite', n, text: piece });
      else pushText(piece);
    }
    pushText(']');
  }
  pushText(text.slice(last));
  return parts;
}

/** "handbook.pdf — p. 3 — Leave > Sick days" (missing parts left out). */
export function sourceLabel(s: Pick<Source, 'document_name' | 'page' | 'heading'>): string {
  return [s.document_name, s.page != null ? `p. ${s.page}` : '', s.heading ?? ''].filter(Boolean).join(' — ');
}

export function sourceHref(s: Pick<Source, 'document_id' | 'chunk_id'>): string {
  return documentHref(s.document_id, s.chunk_id);
}

/** Sources ordered by number, one per number (the first wins). */
export function orderedSources(sources: Source[] | null | undefined): Source[] {
  const byN = new Map<number, Source>();
  for (const s of sources ?? []) if (Number.isInteger(s.n) && !byN.has(s.n)) byN.set(s.n, s);
  return [...byN.values()].sort((a, b) => a.n - b.n);
}

const SKIP = 'a, code, pre, kbd, samp';

/** Replaces citation markers in the text under `root` with links to their sources. */
export function linkCitations(root: Node, sources: Source[]): void {
  const byN = new Map(orderedSources(sources).map((s) => [s.n, s]));
  if (byN.size === 0) return;
  const doc = root.ownerDocument ?? (root as Document);
  const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
  const texts: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const parent = n.parentElement;
    if (parent && !parent.closest(SKIP) && n.nodeValue && n.nodeValue.includes('[')) texts.push(n as Text);
  }
  for (const node of texts) {
    const parts = splitCitations(node.nodeValue ?? '', (n) => byN.has(n));
    if (!parts.some((p) => p.kind === 'cite')) continue;
    const frag = doc.createDocumentFragment();
    for (const p of parts) {
      if (p.kind === 'text') {
        frag.appendChild(doc.createTextNode(p.text));
        continue;
      }
      const s = byN.get(p.n)!;
      const a = doc.createElement('a');
      a.className = 'cite';
      a.setAttribute('href', sourceHref(s));
      a.textContent = p.text;
      a.setAttribute('aria-label', `Source ${s.n}: ${sourceLabel(s)}`);
      a.title = sourceLabel(s);
      frag.appendChild(a);
    }
    node.replaceWith(frag);
  }
}
