/**
 * The hyperparameter config: defaults as documented, JSON and YAML files, precedence of flags over
 * the file, and errors that name the file, the key, the expected type and the received value.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  CONFIG_KEYS, CONFIG_SCHEMA, checkPartialConfig, ConfigError, configToJSON, DEFAULT_CONFIG, FLAGS_SOURCE, loadConfigFile, resolveConfig, TrainConfig,
} from '../../lib/config';
import { tempDir } from '../helpers';

const REQUIRED = { model: 'gpt2-dir', data: 'train.jsonl', output_dir: 'out' };

function write(name: string, text: string): string {
  const file = path.join(tempDir('gptune-config-'), name);
  fs.writeFileSync(file, text);
  return file;
}

describe('defaults', () => {
  test('every key of TrainConfig documents its default, and the documented value is the real one', () => {
    // The interface's comments are what users read; parse "Default X." from each key's comment.
    const source = fs.readFileSync(path.join(__dirname, '../../lib/config/index.ts'), 'utf8');
    const body = source.slice(source.indexOf('export interface TrainConfig'), source.indexOf('export type ConfigKey'));
    const documented = new Map<string, string>();
    for (const m of body.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*\n\s*(\w+):/g)) documented.set(m[2], m[1]);
    expect([...documented.keys()].sort()).toEqual([...CONFIG_KEYS].sort());
    for (const key of CONFIG_KEYS) {
      const comment = documented.get(key)!;
      if (/Required\./.test(comment)) {
        expect([null, '[]']).toContainEqual(Array.isArray(DEFAULT_CONFIG[key]) ? '[]' : DEFAULT_CONFIG[key]);
        continue;
      }
      const m = /Default ("[^"]*"|[^\s,;:]+?)(?=[.,;:]?(\s|$))/.exec(comment);
      expect([key, m !== null]).toEqual([key, true]);
      expect([key, JSON.parse(m![1])]).toEqual([key, DEFAULT_CONFIG[key]]);
    }
  });

  test('resolveConfig fills every key with its default and keeps the given ones', () => {
    const c = resolveConfig({}, REQUIRED);
    expect(c).toEqual({ ...DEFAULT_CONFIG, ...REQUIRED });
    expect(c.learning_rate).toBe(3e-4);
    expect(c.schedule).toBe('constant');
    expect(c.grad_clip).toBe(1.0);
    // The saved JSON has every key in schema order and parses back to the same config.
    const json = configToJSON(c);
    expect(Object.keys(JSON.parse(json))).toEqual(CONFIG_KEYS);
    expect(resolveConfig(JSON.parse(json))).toEqual(c);
  });
});

describe('files', () => {
  test('YAML: scientific notation, booleans and null', () => {
    const file = write('train.yaml', [
      '# fine-tuning run',
      'model: ./gpt2',
      'data: train.txt',
      'validation: val.txt',
      'output_dir: out',
      'learning_rate: 1e-4',
      'batch_size: 8',
      'schedule: cosine',
      'warmup_ratio: 0.1',
      'shuffle: false',
      'seq_len: null',
      'eval_every: 50',
      'early_stopping_patience: 3',
    ].join('\n'));
    const c = resolveConfig(loadConfigFile(file), {});
    expect([c.learning_rate, c.batch_size, c.schedule, c.warmup_ratio, c.shuffle, c.seq_len, c.data, c.early_stopping_patience])
      .toEqual([1e-4, 8, 'cosine', 0.1, false, null, 'train.txt', 3]);
  });

  test('JSON, and any later layer wins: defaults < file < overrides', () => {
    const file = write('train.json', JSON.stringify({ ...REQUIRED, data: 'a.jsonl', learning_rate: 1e-3, batch_size: 2, seed: 7 }));
    const c = resolveConfig(loadConfigFile(file), { learning_rate: 5e-4, seed: 8 });
    expect([c.learning_rate, c.batch_size, c.seed, c.data]).toEqual([5e-4, 2, 8, 'a.jsonl']);
    // A checkpoint's config is the lowest layer when resuming.
    const resumed = resolveConfig({ batch_size: 3 }, { seed: 9 }, { base: { ...REQUIRED, batch_size: 5, weight_decay: 0.1 } });
    expect([resumed.batch_size, resumed.weight_decay, resumed.seed]).toEqual([3, 0.1, 9]);
  });

  test('an empty YAML file is an empty config', () => {
    expect(loadConfigFile(write('empty.yaml', '# nothing yet\n'))).toEqual({});
  });
});

describe('errors name the file, the key, what was expected and what was received', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['typo.yaml', 'learnig_rate: 1e-4\n', /typo\.yaml: unknown key 'learnig_rate' \(did you mean 'learning_rate'\?\)/],
    ['flagname.yaml', 'lr: 1e-4\n', /flagname\.yaml: unknown key 'lr' \(did you mean 'learning_rate'\?\)/],
    ['string.yaml', 'learning_rate: fast\n', /string\.yaml: key 'learning_rate': expected a number >= 0 but received the string "fast"/],
    ['quoted.json', '{"batch_size": "8"}', /quoted\.json: key 'batch_size': expected a whole number >= 1 but received the string "8"/],
    ['fraction.yaml', 'batch_size: 2.5\n', /fraction\.yaml: key 'batch_size': expected a whole number >= 1 but received number 2\.5/],
    ['beta.yaml', 'beta2: 1\n', /beta\.yaml: key 'beta2': expected a number in \[0, 1\) but received number 1/],
    ['choice.yaml', 'schedule: exponential\n', /choice\.yaml: key 'schedule': expected one of "constant", "linear", "cosine" but received the string "exponential"/],
    ['bool.yaml', 'shuffle: "no"\n', /bool\.yaml: key 'shuffle': expected true or false but received the string "no"/],
    ['nullable.yaml', 'learning_rate: null\n', /nullable\.yaml: key 'learning_rate': expected a number >= 0 but received null/],
    ['list.yaml', 'data: [a.txt, b.txt]\n', /list\.yaml: key 'data': expected a non-empty string or null but received a list/],
    ['empty.yaml', 'model: ""\n', /empty\.yaml: key 'model': expected a non-empty string or null but received the string ""/],
    ['epochs.yaml', 'epochs: 0\n', /epochs\.yaml: key 'epochs': expected a number > 0 but received number 0/],
    ['top.yaml', '- a\n- b\n', /top\.yaml: expected a mapping of config keys to values but received a list/],
    ['syntax.yaml', 'model: a\n  bad: [\n', /syntax\.yaml: invalid YAML at line \d+, column \d+/],
    ['dup.yaml', 'seed: 1\nseed: 2\n', /dup\.yaml: invalid YAML/],
    ['broken.json', '{"seed": 1,}', /broken\.json: invalid JSON/],
  ];
  test.each(cases)('%s', (name, text, pattern) => {
    const file = write(name, text);
    expect(() => loadConfigFile(file)).toThrow(pattern);
  });

  test('YAML that parses but cannot be resolved (undefined alias, alias bomb) is a ConfigError', () => {
    // Found by scripts/fuzz.ts: the yaml package throws a ReferenceError from toJS() for these.
    const alias = write('alias.yaml', 'schedule: *constant\n');
    expect(() => loadConfigFile(alias)).toThrow(ConfigError);
    expect(() => loadConfigFile(alias)).toThrow(/^.*alias\.yaml: invalid YAML \(Unresolved alias/);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill('*' + String.fromCharCode(97 + i)).join(', ')}]`);
    const file = write('bomb.yaml', bomb.join('\n') + '\n');
    expect(() => loadConfigFile(file)).toThrow(ConfigError);
  });

  test('a missing file and a folder', () => {
    expect(() => loadConfigFile('/nonexistent/run.yaml')).toThrow('--config /nonexistent/run.yaml: file not found');
    expect(() => loadConfigFile(tempDir())).toThrow(/expected a JSON or YAML file but found a folder/);
  });

  test('flag values name the flag', () => {
    expect(() => checkPartialConfig(FLAGS_SOURCE, { warmup_ratio: 1.5 })).toThrow(/^--warmup-ratio: expected a number in \[0, 1\) but received number 1\.5$/);
    expect(() => checkPartialConfig(FLAGS_SOURCE, { dropout: 1 })).toThrow(/^--dropout: expected a number in \[0, 1\) or null but received number 1$/);
  });

  test('keys that depend on each other', () => {
    const cases: Array<[Partial<TrainConfig>, RegExp]> = [
      [{ warmup_steps: 10, warmup_ratio: 0.1 }, /give warmup_steps \(10\) or warmup_ratio \(0\.1\), not both/],
      [{ validation: 'v.txt', validation_fraction: 0.1 }, /give validation \(v\.txt\) or validation_fraction \(0\.1\), not both/],
      [{ eval_every: 10 }, /eval_every needs validation data/],
      [{ validation: 'v.txt', early_stopping_patience: 2 }, /early_stopping_patience needs eval_every > 0/],
      [{ learning_rate: 1e-4, min_lr: 1e-3 }, /min_lr \(0\.001\) must not exceed learning_rate \(0\.0001\)/],
    ];
    for (const [overrides, pattern] of cases) expect(() => resolveConfig({}, { ...REQUIRED, ...overrides })).toThrow(pattern);
    // Validation batches handed to the Trainer by a program count as validation data.
    expect(resolveConfig({}, { ...REQUIRED, eval_every: 10, early_stopping_patience: 2 }, { validationProvided: true }).eval_every).toBe(10);
    expect(() => resolveConfig({}, { data: 'x', output_dir: 'o' })).toThrow(/'model' is required/);
    expect(() => resolveConfig({}, { model: 'm', output_dir: 'o' })).toThrow(/'data' is required/);
    expect(() => resolveConfig({}, { model: 'm', data: 'x' })).toThrow(/'output_dir' is required/);
  });

  test('every key has a distinct flag', () => {
    const flags = CONFIG_KEYS.map((k) => CONFIG_SCHEMA[k].flag);
    expect(new Set(flags).size).toBe(flags.length);
  });
});
