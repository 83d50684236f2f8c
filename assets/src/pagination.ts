// Cursor pagination state for long lists (the conversation sidebar): pages are
// appended as they load, items stay unique by id, and local changes (a new or renamed
// conversation moves to the top, a deleted one goes) apply without reloading.

export interface Paged<T> {
  items: T[];
  /** Cursor for the next page; null when there is none (yet or anymore). */
  cursor: string | null;
  /** Whether the first page has arrived. */
  started: boolean;
  /** Whether every page has been loaded. */
  done: boolean;
  loading: boolean;
  error: string | null;
}

export function emptyPaged<T>(): Paged<T> {
  return { items: [], cursor: null, started: false, done: false, loading: false, error: null };
}

/** Whether another page should be requested now. */
export function canLoadMore<T>(state: Paged<T>): boolean {
  return !state.loading && !state.done && (!state.started || state.cursor !== null);
}

/** The cursor to request next (undefined = first page). */
export function nextCursor<T>(state: Paged<T>): string | undefined {
  return state.started && state.cursor ? state.cursor : undefined;
}

export function loading<T>(state: Paged<T>): Paged<T> {
  return { ...state, loading: true, error: null };
}

export function failed<T>(state: Paged<T>, error: string): Paged<T> {
  return { ...state, loading: false, error };
}

/** Appends a page; items already present (moved by a local change) are not repeated. */
export function appendPage<T extends { id: string | number }>(
  state: Paged<T>,
  page: { data: T[]; next_cursor: string | null },
): Paged<T> {
  const seen = new Set(state.items.map((i) => i.id));
  const fresh = page.data.filter((i) => !seen.has(i.id));
  return {
    items: fresh.length ? state.items.concat(fresh) : state.items,
    cursor: page.next_cursor,
    started: true,
    done: page.next_cursor === null,
    loading: false,
    error: null,
  };
}

/** Puts `item` first (new, or just updated: lists are newest first). */
export function upsertTop<T extends { id: string | number }>(state: Paged<T>, item: T): Paged<T> {
  return { ...state, items: [item, ...state.items.filter((i) => i.id !== item.id)] };
}

/** Replaces `item` where it is, if present. */
export function replaceItem<T extends { id: string | number }>(state: Paged<T>, item: T): Paged<T> {
  if (!state.items.some((i) => i.id === item.id)) return state;
  return { ...state, items: state.items.map((i) => (i.id === item.id ? item : i)) };
}

export function removeItem<T extends { id: string | number }>(state: Paged<T>, id: T['id']): Paged<T> {
  return { ...state, items: state.items.filter((i) => i.id !== id) };
}
