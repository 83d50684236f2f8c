// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';
import { linkCitations, orderedSources, sourceLabel, splitCitations } from './citations';
import { renderMarkdown } from './markdown';
import { replyWithSources } from './sse';
import { pickerSummary } from './components/CollectionPicker';
import type { Message, Source } from './types';

const src = (n: number, extra: Partial<Source> = {}): Source => ({
  n,
  document_id: 100 + n,
  document_name: `doc${n}.pdf`,
  chunk_id: 200 + n,
  page: null,
  heading: null,
  ...extra,
});
const known = (...ns: number[]) => (n: number) => ns.includes(n);

function toDom(html: string): HTMLElement {
  const div = document.createElement('div');
  div.innerHTML = html;
  return div;
}

describe('splitCitations', () => {
  it('splits single markers, brackets included', () => {
    expect(splitCitations('Paris [1] is big [2].', known(1, 2))).toEqual([
      { kind: 'text', text: 'Paris ' },
      { kind: 'cite', n: 1, text: '[1]' },
      { kind: 'text', text: ' is big ' },
      { kind: 'cite', n: 2, text: '[2]' },
      { kind: 'text', text: '.' },
    ]);
  });

  it('links each known number of a list and keeps the separators', () => {
    expect(splitCitations('x [1, 2] y', known(1, 2))).toEqual([
      { kind: 'text', text: 'x [' },
      { kind: 'cite', n: 1, text: '1' },
      { kind: 'text', text: ', ' },
      { kind: 'cite', n: 2, text: '2' },
      { kind: 'text', text: '] y' },
    ]);
    expect(splitCitations('[3,1]', known(1))).toEqual([
      { kind: 'text', text: '[3,' },
      { kind: 'cite', n: 1, text: '1' },
      { kind: 'text', text: ']' },
    ]);
  });

  it('leaves markers without a matching source as text', () => {
    expect(splitCitations('see [7] and [7, 8]', known(1))).toEqual([{ kind: 'text', text: 'see [7] and [7, 8]' }]);
    expect(splitCitations('a[1]b', known())).toEqual([{ kind: 'text', text: 'a[1]b' }]);
    expect(splitCitations('[x] [1a] [] [1,]', known(1))).toEqual([{ kind: 'text', text: '[x] [1a] [] [1,]' }]);
  });

  it('handles adjacent markers and the same call twice (no regex state leaks)', () => {
    const parts = splitCitations('[1][2]', known(1, 2));
    expect(parts.map((p) => p.text)).toEqual(['[1]', '[2]']);
    expect(splitCitations('[1][2]', known(1, 2))).toEqual(parts);
  });
});

describe('sources', () => {
  it('labels a source with page and heading when known', () => {
    expect(sourceLabel(src(1, { page: 3, heading: 'Leave > Sick days' }))).toBe('doc1.pdf — p. 3 — Leave > Sick days');
    expect(sourceLabel(src(1))).toBe('doc1.pdf');
    expect(sourceLabel(src(1, { page: 0 }))).toBe('doc1.pdf — p. 0');
  });

  it('orders sources by number and drops repeated numbers', () => {
    expect(orderedSources([src(2), src(1), src(2, { document_name: 'other' })]).map((s) => [s.n, s.document_name])).toEqual([
      [1, 'doc1.pdf'],
      [2, 'doc2.pdf'],
    ]);
    expect(orderedSources(undefined)).toEqual([]);
  });
});

describe('linkCitations', () => {
  it('turns known markers into links to the passage', () => {
    const root = toDom('<p>Paris is the capital [1]. Berlin [2].</p>');
    linkCitations(root, [src(1, { page: 4 })]);
    const links = root.querySelectorAll('a.cite');
    expect(links.length).toBe(1);
    expect(links[0].getAttribute('href')).toBe('#/documents/101?chunk=201');
    expect(links[0].textContent).toBe('[1]');
    expect(links[0].getAttribute('aria-label')).toBe('Source 1: doc1.pdf — p. 4');
    expect(root.textContent).toBe('Paris is the capital [1]. Berlin [2].');
  });

  it('never touches code or existing links', () => {
    const root = toDom('<p><code>a[1]</code> <a href="https://x">[1]</a></p><pre><code>b[1]</code></pre><p>ok [1]</p>');
    linkCitations(root, [src(1)]);
    expect(root.querySelectorAll('a.cite').length).toBe(1);
    expect(root.querySelector('code')!.textContent).toBe('a[1]');
  });

  it('does not parse source fields as HTML', () => {
    const root = toDom('<p>x [1]</p>');
    linkCitations(root, [src(1, { document_name: '<img src=x onerror=alert(1)>' })]);
    expect(root.querySelector('img')).toBeNull();
    expect(root.querySelector('a.cite')!.getAttribute('title')).toBe('<img src=x onerror=alert(1)>');
  });
});

describe('renderMarkdown with sources', () => {
  it('links markers in rendered markdown, lists included', () => {
    const dom = toDom(renderMarkdown('**Paris** [1, 2]\n\n- item [2]\n\n`[1]`', [src(1), src(2)]));
    const hrefs = [...dom.querySelectorAll('a.cite')].map((a) => a.getAttribute('href'));
    expect(hrefs).toEqual(['#/documents/101?chunk=201', '#/documents/102?chunk=202', '#/documents/102?chunk=202']);
    expect(dom.querySelector('code')!.textContent).toBe('[1]');
  });

  it('changes nothing without sources', () => {
    expect(renderMarkdown('a [1]', [])).toBe(renderMarkdown('a [1]'));
    expect(renderMarkdown('a [1]')).not.toContain('cite');
  });
});

describe('replyWithSources', () => {
  const message = { id: 2, role: 'assistant', content: 'x [1]', status: 'complete', created_at: '' } as Message;
  const user = { ...message, id: 1, role: 'user' } as Message;

  it('takes the sources of the done event when the message has none', () => {
    expect(replyWithSources({ type: 'done', user_message: user, message, sources: [src(1)] }).sources).toEqual([src(1)]);
  });

  it('keeps the message as it is otherwise', () => {
    expect(replyWithSources({ type: 'done', user_message: user, message })).toBe(message);
    const own = { ...message, sources: [src(2)] };
    expect(replyWithSources({ type: 'done', user_message: user, message: own, sources: [src(1)] })).toBe(own);
  });
});

describe('collection picker summary', () => {
  const coll = (id: number, name: string) =>
    ({ id, name, description: '', shared: false, owner: 'a', documents: 0, chunks: 0, created_at: '', writable: true }) as const;
  const all = [coll(1, 'Handbook'), coll(2, 'Wiki'), coll(3, 'Specs')];

  it('names the first chosen collection and counts the rest, ignoring unknown ids', () => {
    expect(pickerSummary(all, [])).toBe('off');
    expect(pickerSummary(all, [2])).toBe('Wiki');
    expect(pickerSummary(all, [1, 3])).toBe('Handbook +1');
    expect(pickerSummary(all, [9])).toBe('off');
    expect(pickerSummary(null, [1])).toBe('off');
  });
});
