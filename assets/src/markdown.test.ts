// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';
import { escapeHtml, highlight, renderMarkdown, snippetParts } from './markdown';

function toDom(html: string): HTMLElement {
  const div = document.createElement('div');
  div.innerHTML = html;
  return div;
}

describe('renderMarkdown', () => {
  it('renders GFM', () => {
    const html = renderMarkdown('# Title\n\n**bold** and *it*\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |');
    expect(html).toContain('<h1>Title</h1>');
    expect(html).toContain('<strong>bold</strong>');
    expect(html).toContain('<li>one</li>');
    expect(html).toContain('<td>1</td>');
  });

  it('shows raw HTML as text and never keeps scripts, handlers or javascript: links', () => {
    const html = renderMarkdown('<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))');
    const dom = toDom(html);
    expect(dom.querySelectorAll('script, img, [onerror]').length).toBe(0);
    expect([...dom.querySelectorAll('a')].some((a) => /^javascript:/i.test(a.getAttribute('href') ?? ''))).toBe(false);
    // Shown as text instead.
    expect(dom.textContent).toContain('<script>alert(1)</script>');
    expect(dom.textContent).toContain('<img src=x onerror=alert(1)>');
  });

  it('turns images into links (no remote loads)', () => {
    const html = renderMarkdown('![a cat](https://example.com/cat.png)');
    expect(html).not.toContain('<img');
    expect(html).toContain('href="https://example.com/cat.png"');
    expect(html).toContain('a cat');
  });

  it('opens external links in a new tab without an opener', () => {
    const html = renderMarkdown('[site](https://example.com)');
    expect(html).toContain('target="_blank"');
    expect(html).toContain('rel="noopener noreferrer nofollow"');
  });

  it('highlights fenced code and adds a copy button', () => {
    const html = renderMarkdown('```python\ndef f():\n    return 1\n```');
    expect(html).toContain('class="code-block"');
    expect(html).toContain('<button type="button" class="copy-code"');
    expect(html).toContain('class="hljs language-python"');
    expect(html).toContain('hljs-keyword');
  });

  it('escapes code in unknown languages', () => {
    const html = renderMarkdown('```nosuchlang\n<b>x</b>\n```');
    expect(html).toContain('&lt;b&gt;x&lt;/b&gt;');
    expect(html).toContain('nosuchlang');
  });

  it('renders an unfinished code fence while streaming', () => {
    const html = renderMarkdown('Here:\n```js\nconst a = 1;');
    expect(html).toContain('code-block');
    expect(html).toContain('hljs-keyword');
  });

  it('strips style attributes (the CSP forbids them)', () => {
    expect(toDom(renderMarkdown('<p style="color:red">x</p>\n\n*y*')).querySelectorAll('[style]').length).toBe(0);
  });
});

describe('helpers', () => {
  it('escapes HTML', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;');
  });

  it('falls back to escaped text for unknown languages', () => {
    expect(highlight('<x>', 'klingon')).toEqual({ html: '&#60;x&#62;', language: 'klingon' });
    expect(highlight('fn main() {}', 'rs').html).toContain('hljs-keyword');
  });

  it('splits search snippets at [ ] marks', () => {
    expect(snippetParts('…the capital of [France] is [Paris]…')).toEqual([
      { text: '…the capital of ', hit: false },
      { text: 'France', hit: true },
      { text: ' is ', hit: false },
      { text: 'Paris', hit: true },
      { text: '…', hit: false },
    ]);
    expect(snippetParts('no marks')).toEqual([{ text: 'no marks', hit: false }]);
    expect(snippetParts('[]')).toEqual([]);
  });
});
