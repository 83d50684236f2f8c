// The chat's compact choice of document collections to answer from: a menu of
// checkboxes whose every change is saved at once.

import { useEffect, useRef, useState } from 'preact/hooks';
import { documentsHref } from '../router';
import type { Collection } from '../types';
import { ErrorBox } from './common';

/** "off", "Handbook", "Handbook +2" (unknown ids, e.g. deleted collections, not counted). */
export function pickerSummary(collections: Collection[] | null, selected: number[]): string {
  const names = (collections ?? []).filter((c) => selected.includes(c.id)).map((c) => c.name);
  if (names.length === 0) return 'off';
  return names.length === 1 ? names[0] : `${names[0]} +${names.length - 1}`;
}

export function CollectionPicker({
  idPrefix,
  collections,
  loadError,
  selected,
  onChange,
}: {
  idPrefix: string;
  /** null while loading. */
  collections: Collection[] | null;
  loadError: unknown;
  selected: number[];
  onChange: (ids: number[]) => Promise<void> | void;
}) {
  const [ids, setIds] = useState(selected);
  const [error, setError] = useState<unknown>(null);
  const [saving, setSaving] = useState(false);
  const menu = useRef<HTMLDetailsElement>(null);
  const key = selected.join(',');
  useEffect(() => setIds(selected), [key]);

  // Checkboxes stay enabled while saving (disabling one would drop keyboard focus);
  // only the latest change's outcome counts.
  const latest = useRef(0);
  const toggle = async (id: number, on: boolean) => {
    const known = new Set((collections ?? []).map((c) => c.id));
    const rest = ids.filter((x) => x !== id && known.has(x));
    const next = on ? [...rest, id] : rest;
    const n = ++latest.current;
    setIds(next);
    setError(null);
    setSaving(true);
    try {
      await onChange(next);
    } catch (e) {
      if (n === latest.current) {
        setIds(selected);
        setError(e);
      }
    } finally {
      if (n === latest.current) setSaving(false);
    }
  };

  return (
    <details
      class="menu picker"
      ref={menu}
      onKeyDown={(e) => {
        if (e.key === 'Escape' && menu.current?.open) {
          menu.current.open = false;
          menu.current.querySelector('summary')?.focus();
        }
      }}
    >
      <summary class="btn btn-small" data-testid="collection-picker">
        Documents: {pickerSummary(collections, ids)}
      </summary>
      <div class="menu-items picker-items">
        {collections === null && loadError == null && <p class="muted small">Loading collections…</p>}
        <ErrorBox error={loadError} />
        {collections?.length === 0 && (
          <p class="small">
            No collections yet. <a href={documentsHref(null)}>Add documents</a> to let replies quote and cite them.
          </p>
        )}
        {collections && collections.length > 0 && (
          <fieldset class="picker-set" aria-busy={saving}>
            <legend>Answer from these collections</legend>
            {collections.map((c) => (
              <label class="check" key={c.id} for={`${idPrefix}-coll-${c.id}`}>
                <input
                  id={`${idPrefix}-coll-${c.id}`}
                  type="checkbox"
                  checked={ids.includes(c.id)}
                  onChange={(e) => toggle(c.id, e.currentTarget.checked)}
                />
                <span>
                  {c.name}
                  {!c.writable && <span class="muted small"> (shared by {c.owner})</span>}
                </span>
              </label>
            ))}
          </fieldset>
        )}
        <ErrorBox error={error} />
      </div>
    </details>
  );
}
