/**
 * LoRA's settings and module selection against PEFT's documented semantics (peft tuners_utils.py
 * check_target_module_exists, constants.py's per-model defaults, layer.py's scaling): the expected
 * module lists are written out by hand from those definitions.
 */
import { parseDecoderSpec } from '../../lib/model/config';
import { planMemory } from '../../lib/model/decoder';
import { LORA_DEFAULTS, loraScaling, matchModulesToSave, matchTargets } from '../../lib/lora/modules';
import { adapterSpecs } from '../../lib/lora/adapter';
import { UsageError } from '../../lib/errors';

const GPT2 = parseDecoderSpec('new:n_layer=2,n_head=4,n_embd=32,n_positions=64,vocab_size=350');
const LLAMA = parseDecoderSpec('new:arch=llama,n_layer=2,n_head=4,n_kv_head=2,n_embd=32,n_inner=64,n_positions=64,vocab_size=350');

describe('target_modules matching (PEFT semantics)', () => {
  test('per-architecture defaults: GPT-2 c_attn, the Llama family q_proj and v_proj', () => {
    expect(matchTargets(GPT2, null).map((m) => m.key)).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn']);
    expect(matchTargets(LLAMA, null).map((m) => m.key)).toEqual([
      'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj',
    ]);
  });

  test('a name matches a key equal to it or ending in "." + name: c_proj hits attn and mlp, attn.c_proj only attn', () => {
    expect(matchTargets(GPT2, ['c_proj']).map((m) => m.key)).toEqual([
      'transformer.h.0.attn.c_proj', 'transformer.h.0.mlp.c_proj', 'transformer.h.1.attn.c_proj', 'transformer.h.1.mlp.c_proj',
    ]);
    expect(matchTargets(GPT2, ['attn.c_proj']).map((m) => m.key)).toEqual(['transformer.h.0.attn.c_proj', 'transformer.h.1.attn.c_proj']);
    expect(matchTargets(GPT2, ['h.1.mlp.c_fc']).map((m) => m.key)).toEqual(['transformer.h.1.mlp.c_fc']);
    // "proj" is not a suffix after a dot of any key: no partial-word matches.
    expect(() => matchTargets(LLAMA, ['proj'])).toThrow(UsageError);
  });

  test('all-linear is every linear layer but the LM head', () => {
    expect(matchTargets(GPT2, 'all-linear')).toHaveLength(2 * 4);
    const llama = matchTargets(LLAMA, 'all-linear').filter((m) => m.layer === 0).map((m) => m.key.split('.').pop());
    expect(llama).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
  });

  test("Llama modules are column slices of gptune's packed matmuls, with PEFT's in/out features", () => {
    // NH=4, NKV=2, HS=8: q rows [0,32), k [32,48), v [48,64) of the (64, 32) packed qkv; gate [0,64), up [64,128) of (128, 32).
    const byName = new Map(matchTargets(LLAMA, 'all-linear').filter((m) => m.layer === 1).map((m) => [m.key.split('.').pop(), m]));
    const shape = (n: string) => { const m = byName.get(n)!; return [m.role, m.offset, m.inFeatures, m.outFeatures, m.rowWidth]; };
    expect(shape('q_proj')).toEqual(['qkvw', 0, 32, 32, 64]);
    expect(shape('k_proj')).toEqual(['qkvw', 32, 32, 16, 64]);
    expect(shape('v_proj')).toEqual(['qkvw', 48, 32, 16, 64]);
    expect(shape('o_proj')).toEqual(['outw', 0, 32, 32, 32]);
    expect(shape('gate_proj')).toEqual(['fcw', 0, 32, 64, 128]);
    expect(shape('up_proj')).toEqual(['fcw', 64, 32, 64, 128]);
    expect(shape('down_proj')).toEqual(['projw', 0, 64, 32, 32]);
  });

  test('an unknown name is an error listing the modules that exist; the LM head and embeddings are refused as targets', () => {
    expect(() => matchTargets(LLAMA, ['q_prj'], '--lora-targets')).toThrow(
      '--lora-targets: no module named q_prj in this llama model; its linear modules are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (or all-linear)');
    expect(() => matchTargets(GPT2, ['c_atn'], '--lora-targets')).toThrow(/its linear modules are c_attn, c_proj, c_fc, attn\.c_attn, attn\.c_proj, mlp\.c_fc, mlp\.c_proj/);
    expect(() => matchTargets(LLAMA, ['lm_head'])).toThrow(/lm_head is not a linear layer gptune can adapt.*lora_modules_to_save/);
    expect(() => matchTargets(GPT2, ['wte'])).toThrow(UsageError);
  });

  test('modules_to_save: the LM head and the token embedding, under their Hugging Face names', () => {
    expect(matchModulesToSave(LLAMA, ['lm_head', 'embed_tokens'])).toEqual(['head', 'embed']);
    expect(matchModulesToSave(GPT2, ['wte'])).toEqual(['embed']);
    expect(() => matchModulesToSave(GPT2, ['ln_f'], '--lora-modules-to-save')).toThrow(/--lora-modules-to-save: gptune can train in full only the LM head \(lm_head\) or the token embedding \(wte\), not ln_f/);
  });
});

describe('adapter layout and scaling', () => {
  test('scaling is alpha / r, or alpha / sqrt(r) with rsLoRA', () => {
    expect(loraScaling({ r: 8, alpha: 16, useRslora: false })).toBe(2);
    expect(loraScaling({ r: 16, alpha: 16, useRslora: true })).toBe(4);
    expect(loraScaling({ r: 4, alpha: 8, useRslora: true })).toBe(4);
  });

  test('A is (r, in) and B is (out, r) under PEFT names, for Conv1D modules too; saved modules are (V, C)', () => {
    const { specs } = adapterSpecs(GPT2, { ...LORA_DEFAULTS, r: 4, targets: ['c_attn', 'mlp.c_proj'], modulesToSave: ['lm_head'] });
    expect(specs.map((s) => [s.name, s.shape])).toEqual([
      ['transformer.h.0.attn.c_attn.lora_A.weight', [4, 32]], ['transformer.h.0.attn.c_attn.lora_B.weight', [96, 4]],
      ['transformer.h.0.mlp.c_proj.lora_A.weight', [4, 128]], ['transformer.h.0.mlp.c_proj.lora_B.weight', [32, 4]],
      ['transformer.h.1.attn.c_attn.lora_A.weight', [4, 32]], ['transformer.h.1.attn.c_attn.lora_B.weight', [96, 4]],
      ['transformer.h.1.mlp.c_proj.lora_A.weight', [4, 128]], ['transformer.h.1.mlp.c_proj.lora_B.weight', [32, 4]],
      ['lm_head.weight', [350, 32]],
    ]);
  });

  test('the memory plan of LoRA training counts gradients and moments of the adapter only', () => {
    const lora = { ...LORA_DEFAULTS, r: 8, targets: 'all-linear' as const };
    const full = planMemory(LLAMA, { batch: null, training: true }).parts;
    const adapter = planMemory(LLAMA, { batch: null, training: true, lora }).parts;
    // Per layer: q (8x32 + 32x8), k (8x32 + 16x8), v (same as k), o (8x32 + 32x8), gate, up (8x32 + 64x8 each), down (8x64 + 32x8).
    const perLayer = (256 + 256) + (256 + 128) * 2 + (256 + 256) + (256 + 512) * 2 + (512 + 256);
    expect(adapter['LoRA adapter']).toBe(2 * perLayer * 4);
    expect(adapter.gradients).toBe(adapter['LoRA adapter']);
    expect(adapter['AdamW moments']).toBe(2 * adapter['LoRA adapter']);
    expect(adapter.parameters).toBe(full.parameters);
    // nf4: the blocks' linear weights take ceil(n/2) code bytes, ceil(n/64) scale bytes, ceil(ceil(n/64)/256)
    // float32 second-level scales and one float32 offset, each part starting on a 64-byte boundary of the arena.
    const nf4 = planMemory(LLAMA, { batch: null, training: true, lora, baseDtype: 'nf4' }).parts;
    const padded = (bytes: number) => Math.ceil(bytes / 64) * 64;
    const nf4Bytes = (n: number) => padded(Math.ceil(n / 2)) + padded(Math.ceil(n / 64)) + padded(4 * Math.ceil(Math.ceil(n / 64) / 256)) + padded(4);
    const linear = [64 * 32, 32 * 32, 128 * 32, 32 * 64];
    const saved = 2 * linear.reduce((s, n) => s + 4 * n - nf4Bytes(n), 0);
    expect(full.parameters - nf4.parameters).toBe(saved);
  });
});
