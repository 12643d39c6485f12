/**
 * Sampling settings shared by generate and chat: a flag when given, else the model folder's
 * generation_config.json (temperature, top_k, top_p; do_sample false means greedy), else gptune's
 * defaults (temperature 1, no top-k, no top-p). Unlike transformers, a generation_config.json
 * without do_sample does not make decoding greedy: gptune samples unless told otherwise.
 */
import * as fs from 'fs';
import { readGenerationConfig } from '../io/generation_config';
import { FlagSpec, UsageError } from './args';

/** The sampling flags of generate and chat; unset ones come from generation_config.json (resolveSampling). */
export const SAMPLING_FLAGS: Record<string, FlagSpec> = {
  temperature: { type: 'number', min: 0, help: "softmax temperature (0 = greedy; default: generation_config.json's, else 1)" },
  greedy: { type: 'bool', help: 'always pick the most likely token' },
  'top-k': { type: 'int', min: 0, help: "sample from the k most likely tokens (0 = all; default: generation_config.json's, else 0)" },
  'top-p': { type: 'number', min: 0, help: "nucleus sampling threshold (1 = off; default: generation_config.json's, else 1)" },
};

export interface Sampling {
  temperature: number;
  greedy: boolean;
  topK: number;
  topP: number;
}

export function resolveSampling(v: Record<string, unknown>, modelDir: string): Sampling {
  const topP = v['top-p'] as number | undefined;
  if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1] but received '${topP}'`);
  const config = modelDir.startsWith('new:') || !fs.existsSync(modelDir) ? null : readGenerationConfig(modelDir);
  return {
    temperature: (v.temperature as number | undefined) ?? config?.temperature ?? 1,
    greedy: Boolean(v.greedy) || (v.temperature === undefined && config?.doSample === false),
    topK: (v['top-k'] as number | undefined) ?? config?.topK ?? 0,
    topP: topP ?? config?.topP ?? 1,
  };
}
