import { describe, expect, it } from 'vitest';
import { clipText, formatBytes, mediaLabel, plural } from './format';

describe('format', () => {
  it('clips long text at a word boundary', () => {
    expect(clipText('  short  ', 10)).toBe('short');
    expect(clipText('the quick brown fox jumps', 16)).toBe('the quick brown…');
    expect(clipText('abcdefghijklmnopqrstuvwxyz', 10)).toBe('abcdefghij…');
  });

  it('names media types and counts things', () => {
    expect(mediaLabel('docx')).toBe('Word');
    expect(mediaLabel('epub')).toBe('epub');
    expect(plural(1, 'document')).toBe('1 document');
    expect(plural(1200, 'passage')).toBe('1,200 passages');
    expect(plural(0, 'entry', 'entries')).toBe('0 entries');
  });

  it('formats file sizes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(null)).toBe('–');
  });
});
