import { describe, expect, it } from 'vitest';
import { formFromSettings, settingsFromForm } from './settings';

describe('settings form', () => {
  it('round-trips settings, leaving empty fields out', () => {
    const form = formFromSettings({ temperature: 0, max_tokens: 64, stop: ['###', 'User:'] });
    expect(form.temperature).toBe('0');
    expect(form.top_p).toBe('');
    expect(form.stop).toBe('###\nUser:');
    expect(settingsFromForm(form)).toEqual({ settings: { temperature: 0, max_tokens: 64, stop: ['###', 'User:'] }, errors: {} });
  });

  it('reports unparsable and out-of-range values by field', () => {
    const form = { ...formFromSettings({}), temperature: '3', top_k: '2.5', seed: 'abc', max_tokens: '0' };
    const { errors } = settingsFromForm(form);
    expect(Object.keys(errors).sort()).toEqual(['max_tokens', 'seed', 'temperature', 'top_k']);
    expect(errors.temperature).toMatch(/from 0 to 2/);
    expect(errors.top_k).toMatch(/whole number/);
  });

  it('accepts an empty form as server defaults', () => {
    expect(settingsFromForm(formFromSettings(undefined))).toEqual({ settings: {}, errors: {} });
  });
});
