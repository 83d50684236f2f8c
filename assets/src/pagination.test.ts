import { describe, expect, it } from 'vitest';
import { appendPage, canLoadMore, emptyPaged, failed, loading, nextCursor, removeItem, replaceItem, upsertTop } from './pagination';

type C = { id: string; title: string };
const c = (id: string, title = id): C => ({ id, title });

describe('cursor pagination', () => {
  it('loads pages until next_cursor is null', () => {
    let s = emptyPaged<C>();
    expect(canLoadMore(s)).toBe(true);
    expect(nextCursor(s)).toBeUndefined();
    s = loading(s);
    expect(canLoadMore(s)).toBe(false);
    s = appendPage(s, { data: [c('a'), c('b')], next_cursor: 't~b' });
    expect(s.items.map((i) => i.id)).toEqual(['a', 'b']);
    expect(nextCursor(s)).toBe('t~b');
    expect(canLoadMore(s)).toBe(true);
    s = appendPage(loading(s), { data: [c('c')], next_cursor: null });
    expect(s.done).toBe(true);
    expect(canLoadMore(s)).toBe(false);
    expect(s.items.map((i) => i.id)).toEqual(['a', 'b', 'c']);
  });

  it('does not repeat items moved by local changes', () => {
    let s = appendPage(emptyPaged<C>(), { data: [c('a'), c('b')], next_cursor: 'x' });
    s = upsertTop(s, c('new'));
    s = appendPage(s, { data: [c('new'), c('z')], next_cursor: null });
    expect(s.items.map((i) => i.id)).toEqual(['new', 'a', 'b', 'z']);
  });

  it('moves updated items to the top, replaces and removes', () => {
    let s = appendPage(emptyPaged<C>(), { data: [c('a'), c('b'), c('c')], next_cursor: null });
    s = upsertTop(s, c('c', 'renamed'));
    expect(s.items.map((i) => `${i.id}:${i.title}`)).toEqual(['c:renamed', 'a:a', 'b:b']);
    s = replaceItem(s, c('a', 'A'));
    expect(s.items[1].title).toBe('A');
    expect(replaceItem(s, c('zz'))).toBe(s);
    s = removeItem(s, 'a');
    expect(s.items.map((i) => i.id)).toEqual(['c', 'b']);
  });

  it('keeps the cursor after a failure so the page can be retried', () => {
    let s = appendPage(emptyPaged<C>(), { data: [c('a')], next_cursor: 'k' });
    s = failed(loading(s), 'offline');
    expect(s.error).toBe('offline');
    expect(canLoadMore(s)).toBe(true);
    expect(nextCursor(s)).toBe('k');
  });

  it('handles thousands of items without quadratic blow-up', () => {
    let s = emptyPaged<C>();
    const t0 = performance.now();
    for (let p = 0; p < 100; p++) {
      s = appendPage(loading(s), {
        data: Array.from({ length: 50 }, (_, i) => c(`conv_${p}_${i}`)),
        next_cursor: p < 99 ? `cur${p}` : null,
      });
    }
    expect(s.items.length).toBe(5000);
    expect(s.done).toBe(true);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
