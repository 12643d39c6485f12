/**
 * A model folder's generation_config.json (transformers' GenerationConfig): the sampling defaults the
 * model ships with and the token ids that end a reply. Only the keys gptune uses are read:
 *
 *   {"do_sample": true, "temperature": 0.6, "top_k": 50, "top_p": 0.9,
 *    "eos_token_id": 2 | [128001, 128008, 128009], "max_new_tokens": 256, ...}
 */
import * as fs from 'fs';
import * as path from 'path';
import { FileFormatError } from '../errors';
import { readJSONFile } from './json';

export interface GenerationConfig {
  /** Generation stops at any of these (eos_token_id, one id or a list); null when not given. */
  eosTokenIds: number[] | null;
  /** false: greedy decoding (transformers' default when do_sample is absent). */
  doSample: boolean | null;
  temperature: number | null;
  topK: number | null;
  topP: number | null;
  maxNewTokens: number | null;
}

export const GENERATION_CONFIG_FILE = 'generation_config.json';

/** The folder's generation_config.json, or null when it has none. */
export function readGenerationConfig(dir: string): GenerationConfig | null {
  const file = path.join(dir, GENERATION_CONFIG_FILE);
  if (!fs.existsSync(file)) return null;
  const json = readJSONFile(file);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FileFormatError(`${file}: must hold a JSON object`);
  const o = json as Record<string, unknown>;
  const bad = (key: string, expected: string): never => {
    throw new FileFormatError(`${file}: ${key} must be ${expected} but is ${JSON.stringify(o[key])}`);
  };
  const number = (key: string, ok: (v: number) => boolean, expected: string): number | null => {
    const v = o[key];
    if (v === undefined || v === null) return null;
    return typeof v === 'number' && ok(v) ? v : bad(key, expected);
  };
  const isId = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  let eosTokenIds: number[] | null = null;
  const eos = o.eos_token_id;
  if (eos !== undefined && eos !== null) {
    if (isId(eos)) eosTokenIds = [eos as number];
    else if (Array.isArray(eos) && eos.length > 0 && eos.every(isId)) eosTokenIds = eos as number[];
    else bad('eos_token_id', 'a token id or a non-empty list of them');
  }
  const doSample = o.do_sample;
  if (doSample !== undefined && doSample !== null && typeof doSample !== 'boolean') bad('do_sample', 'true or false');
  return {
    eosTokenIds,
    doSample: typeof doSample === 'boolean' ? doSample : null,
    temperature: number('temperature', (v) => v >= 0, 'a number >= 0'),
    topK: number('top_k', (v) => Number.isSafeInteger(v) && v >= 0, 'a whole number >= 0'),
    topP: number('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]'),
    maxNewTokens: number('max_new_tokens', (v) => Number.isSafeInteger(v) && v >= 0, 'a whole number >= 0'),
  };
}
