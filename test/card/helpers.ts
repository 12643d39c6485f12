/** Reading model cards back in tests: the front matter parsed by the yaml package (not by the code under test) and HF's model-index schema. */
import { parse } from 'yaml';

/** The front matter of a card, parsed by the yaml package (not by the code under test). */
export function cardMetadata(text: string): Record<string, any> {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(text);
  if (!m) throw new Error('the card has no YAML front matter');
  return parse(m[1]);
}

/** Every field HF's model-index schema requires, with its type. */
export function expectModelIndexSchema(meta: Record<string, any>): void {
  expect(Array.isArray(meta['model-index'])).toBe(true);
  for (const entry of meta['model-index']) {
    expect(typeof entry.name).toBe('string');
    expect(Array.isArray(entry.results)).toBe(true);
    for (const r of entry.results) {
      expect(Object.keys(r).sort()).toEqual(['dataset', 'metrics', 'task']);
      expect([typeof r.task.type, typeof r.task.name]).toEqual(['string', 'string']);
      expect([typeof r.dataset.name, typeof r.dataset.type]).toEqual(['string', 'string']);
      expect(r.metrics.length).toBeGreaterThan(0);
      for (const m of r.metrics) {
        expect(Object.keys(m).sort()).toEqual(['name', 'type', 'value']);
        expect([typeof m.type, typeof m.value, typeof m.name]).toEqual(['string', 'number', 'string']);
      }
    }
  }
}
