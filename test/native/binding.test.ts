/**
 * Nothing from JavaScript may crash the process through the addon: every bad argument is a thrown
 * Error naming the kernel, the argument, what was expected and what was received.
 */
import { addon, kernels } from '../../lib/native';

const f = (n: number) => new Float32Array(n).fill(0.5);

describe('kernel arguments are validated', () => {
  test('short buffers', () => {
    expect(() => kernels.matmul_forward(f(5), f(6), f(6), null, 2, 3, 3)).toThrow(/matmul_forward: expected out to hold at least 6 floats for the given dimensions but it holds 5/);
    expect(() => kernels.matmul_forward(f(6), f(5), f(9), null, 2, 3, 3)).toThrow(/inp to hold at least 6/);
    expect(() => kernels.matmul_backward(f(6), f(9), f(2), f(6), f(6), f(9), 2, 3, 3)).toThrow(/dbias to hold at least 3/);
    expect(() => kernels.attention_forward(f(2 * 4 * 8), f(2 * 2 * 4), f(2 * 4 * 24 - 1), null, 2, 4, 2, 2, 4, 0, 0)).toThrow(/qkv to hold at least 192/);
    expect(() => kernels.gelu_forward(f(3), f(2), 3)).toThrow(/gelu_forward: expected inp to hold at least 3/);
  });

  test('NaN, negative, fractional and huge dimensions', () => {
    expect(() => kernels.matmul_forward(f(6), f(6), f(9), null, NaN, 3, 3)).toThrow(/expected a whole number .* for N \(argument 5\) but received the number NaN/);
    expect(() => kernels.matmul_forward(f(6), f(6), f(9), null, -2, 3, 3)).toThrow(/for N \(argument 5\) but received the number -2/);
    expect(() => kernels.matmul_forward(f(6), f(6), f(9), null, 2.5, 3, 3)).toThrow(/for N/);
    expect(() => kernels.matmul_forward(f(6), f(6), f(9), null, 2 ** 31, 3, 3)).toThrow(/for N/);
    expect(() => kernels.matmul_forward(f(6), f(6), f(9), null, 2 ** 30, 2 ** 30, 2 ** 30)).toThrow(/too large|at least/);
    expect(() => kernels.gelu_forward(f(3), f(3), -1)).toThrow(/gelu_forward: expected a whole number between 0 and 2\^53-1 for n \(argument 3\) but received the number -1/);
    expect(() => kernels.gelu_forward(f(3), f(3), Infinity)).toThrow(/for n/);
  });

  test('wrong types and argument counts', () => {
    const k = kernels as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => k.gelu_forward(new Float64Array(3), f(3), 3)).toThrow(/expected a Float32Array or an \{arena, offset, numel\} view for out \(argument 1\) but received a Float64Array of length 3/);
    expect(() => k.gelu_forward([1, 2, 3], f(3), 3)).toThrow(/but received an Array of length 3/);
    expect(() => k.gelu_forward(f(3), f(3))).toThrow(/gelu_forward: expected 3 arguments but received 2/);
    expect(() => k.gelu_forward(f(3), 'x', 3)).toThrow(/received the string 'x'/);
    expect(() => k.encoder_forward(f(8), new Float32Array(2), null, f(8), f(8), 1, 2, 4, 0)).toThrow(/expected an Int32Array for tokens/);
    expect(() => k.layernorm_forward(f(6), null, null, f(6), f(3), f(3), 2, 3, 0)).toThrow(/eps/);
    expect(() => k.adamw_update(f(3), f(3), f(3), f(3), 3, 1e-3, 1.5, 0.999, 1e-8, 0, 1, 1)).toThrow(/beta1/);
    expect(() => k.adamw_update(f(3), f(3), f(3), f(3), 3, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 0)).toThrow(/step/);
  });

  test('token ids, positions and targets out of range', () => {
    const C = 4, V = 5;
    expect(() => kernels.encoder_forward(f(2 * C), Int32Array.of(1, 5), null, f(V * C), f(8 * C), 1, 2, C, 0)).toThrow(/tokens\[1\] = 5 is outside \[0, 5\)/);
    expect(() => kernels.encoder_forward(f(2 * C), Int32Array.of(1, -1), null, f(V * C), f(8 * C), 1, 2, C, 0)).toThrow(/tokens\[1\] = -1/);
    expect(() => kernels.encoder_forward(f(2 * C), Int32Array.of(1, 2), Int32Array.of(0, 8), f(V * C), f(8 * C), 1, 2, C, 0)).toThrow(/positions\[1\] = 8 is outside \[0, 8\)/);
    expect(() => kernels.encoder_forward(f(2 * C), Int32Array.of(1, 2), null, f(V * C), f(8 * C), 1, 2, C, 7)).toThrow(/pos_offset \+ T = 9 exceeds n_positions = 8/);
    expect(() => kernels.crossentropy_forward(f(2), f(2), null, f(2 * V), Int32Array.of(0, 5), 2, V, -100)).toThrow(/targets\[1\] = 5/);
    expect(() => kernels.crossentropy_forward(f(2), f(2), null, f(2 * V), Int32Array.of(0, -100), 2, V, -100)).not.toThrow();
    expect(() => kernels.attention_cached_forward(f(8), f(16), f(16), f(24), 1, 1, 4, 4, 2, 2, 4)).toThrow(/past \+ Tq = 5 exceeds the cache length maxT = 4/);
  });

  test('sgemm leading dimensions and buffer extents', () => {
    expect(() => addon.sgemm(false, false, 2, 3, 4, 1, f(8), 3, f(12), 3, 0, f(6), 3)).toThrow(/lda \(3\) must be at least 4/);
    expect(() => addon.sgemm(false, false, 2, 3, 4, 1, f(8), 4, f(11), 3, 0, f(6), 3)).toThrow(/B to hold at least 12/);
    expect(() => addon.sgemm(true, false, 2, 3, 4, 1, f(7), 2, f(12), 3, 0, f(6), 3)).toThrow(/A to hold at least 8/);
  });
});

describe('grouped-query attention and the Llama-family kernels validate their arguments', () => {
  const i32 = (n: number) => new Int32Array(n);

  test('attention: NH must be a multiple of NKV; buffers sized by NH, NKV and HS', () => {
    // B=1 T=2 NH=4 NKV=2 HS=3: qkv (1,2,(4+4)*3) = 48, out 24, lse 8, caches (1,maxT=4,2*3) = 24
    expect(() => kernels.attention_forward(f(24), f(8), f(48), null, 1, 2, 4, 3, 3, 0, 0)).toThrow(/attention_forward: NH \(4\) must be divisible by NKV \(3\)/);
    expect(() => kernels.attention_backward(f(48), f(24), f(48), f(24), f(8), null, 1, 2, 3, 2, 3, 0, 0)).toThrow(/attention_backward: NH \(3\) must be divisible by NKV \(2\)/);
    expect(() => kernels.attention_cached_forward(f(24), f(24), f(24), f(48), 1, 2, 0, 4, 2, 4, 3)).toThrow(/NH \(2\) must be divisible by NKV \(4\)/);
    expect(() => kernels.attention_forward(f(24), f(8), f(47), null, 1, 2, 4, 2, 3, 0, 0)).toThrow(/qkv to hold at least 48/);
    expect(() => kernels.attention_forward(f(23), f(8), f(48), null, 1, 2, 4, 2, 3, 0, 0)).toThrow(/out to hold at least 24/);
    expect(() => kernels.attention_backward(f(47), f(24), f(48), f(24), f(8), null, 1, 2, 4, 2, 3, 0, 0)).toThrow(/dqkv to hold at least 48/);
    expect(() => kernels.attention_cached_forward(f(24), f(23), f(24), f(48), 1, 2, 0, 4, 4, 2, 3)).toThrow(/kcache to hold at least 24/);
    expect(() => kernels.attention_forward(f(24), f(8), f(48), null, 1, 2, 4, 0, 3, 0, 0)).toThrow(/for NKV \(argument 8\)/);
    expect(() => kernels.attention_forward(f(24), f(8), f(48), null, 1, 2, 4, 2, 0, 0, 0)).toThrow(/for HS \(argument 9\)/);
    expect(() => kernels.attention_forward(f(24), f(8), f(48), null, 1, 2, 4, 2, 3, 1, 0)).toThrow(/attention_forward: .*dropout must be a probability in \[0, 1\) but it is 1/);
    expect(() => kernels.attention_backward(f(48), f(24), f(48), f(24), f(8), null, 1, 2, 4, 2, 3, 0.1, -2)).toThrow(/attention_backward: .*seed must be a whole number/);
    // the cache holds NKV heads only: 24 floats suffice for maxT=4 where NH heads would need 48
    expect(() => kernels.attention_cached_forward(f(24), f(24), f(24), f(48), 1, 2, 0, 4, 4, 2, 3)).not.toThrow();
  });

  test('rmsnorm and qknorm', () => {
    expect(() => kernels.rmsnorm_forward(f(6), null, f(6), f(2), 2, 3, 1e-6)).toThrow(/rmsnorm_forward: expected weight to hold at least 3/);
    expect(() => kernels.rmsnorm_forward(f(6), f(1), f(6), f(3), 2, 3, 1e-6)).toThrow(/rstd to hold at least 2/);
    expect(() => kernels.rmsnorm_forward(f(6), null, f(6), f(3), 2, 3, 0)).toThrow(/a positive number for eps/);
    expect(() => kernels.rmsnorm_backward(f(6), f(3), f(6), f(6), f(3), f(1), 2, 3)).toThrow(/rmsnorm_backward: expected rstd to hold at least 2/);
    expect(() => kernels.rmsnorm_backward(null, null, f(5), f(6), f(3), f(2), 2, 3)).toThrow(/dout to hold at least 6/);
    // N=2 NH=2 NKV=1 HS=4: qkv (2,(2+2)*4) = 32, rstd (2,3) = 6
    expect(() => kernels.qknorm_forward(f(32), f(6), f(32), f(4), f(4), 2, 2, 3, 4, 1e-6)).toThrow(/qknorm_forward: NH \(2\) must be divisible by NKV \(3\)/);
    expect(() => kernels.qknorm_forward(f(32), f(5), f(32), f(4), f(4), 2, 2, 1, 4, 1e-6)).toThrow(/rstd to hold at least 6/);
    expect(() => kernels.qknorm_forward(f(32), null, f(32), f(4), f(3), 2, 2, 1, 4, 1e-6)).toThrow(/k_weight to hold at least 4/);
    expect(() => kernels.qknorm_forward(f(32), null, f(32), f(4), f(4), 2, 2, 1, 4, -1)).toThrow(/eps/);
    expect(() => kernels.qknorm_backward(f(32), null, null, f(32), f(31), f(4), f(4), f(6), 2, 2, 1, 4)).toThrow(/qknorm_backward: expected inp to hold at least 32/);
    expect(() => kernels.qknorm_backward(f(32), f(3), null, f(32), f(32), f(4), f(4), f(6), 2, 2, 1, 4)).toThrow(/dq_weight to hold at least 4/);
  });

  test('rope: positions below max_pos, even HS, tables of max_pos * HS/2', () => {
    // B=1 T=2 NH=2 NKV=1 HS=4 max_pos=3: qkv (1,2,(2+2)*4) = 32, cos/sin (3,2) = 6
    const k = kernels;
    expect(() => k.rope_forward(f(32), f(6), f(6), Int32Array.of(0, 3), 1, 2, 2, 1, 4, 3, 0)).toThrow(/rope_forward: positions\[1\] = 3 is outside \[0, 3\)/);
    expect(() => k.rope_backward(f(32), f(6), f(6), Int32Array.of(-1, 0), 1, 2, 2, 1, 4, 3, 0)).toThrow(/rope_backward: positions\[0\] = -1/);
    expect(() => k.rope_forward(f(32), f(6), f(6), null, 1, 2, 2, 1, 4, 3, 2)).toThrow(/pos_offset \+ T = 4 exceeds max_pos = 3/);
    expect(() => k.rope_forward(f(40), f(6), f(6), null, 1, 2, 2, 1, 5, 3, 0)).toThrow(/HS \(5\) must be even/);
    expect(() => k.rope_forward(f(32), f(6), f(6), null, 1, 2, 3, 2, 4, 3, 0)).toThrow(/NH \(3\) must be divisible by NKV \(2\)/);
    expect(() => k.rope_forward(f(32), f(5), f(6), null, 1, 2, 2, 1, 4, 3, 0)).toThrow(/cos to hold at least 6/);
    expect(() => k.rope_forward(f(32), f(6), f(5), null, 1, 2, 2, 1, 4, 3, 0)).toThrow(/sin to hold at least 6/);
    expect(() => k.rope_forward(f(31), f(6), f(6), null, 1, 2, 2, 1, 4, 3, 0)).toThrow(/qkv to hold at least 32/);
    expect(() => k.rope_backward(f(31), f(6), f(6), null, 1, 2, 2, 1, 4, 3, 0)).toThrow(/dqkv to hold at least 32/);
    expect(() => k.rope_forward(f(32), f(6), f(6), i32(1), 1, 2, 2, 1, 4, 3, 0)).toThrow(/positions to hold at least 2/);
    expect(() => k.rope_forward(f(32), f(6), f(6), null, 1, 2, 2, 1, 4, 3, -1)).toThrow(/pos_offset/);
    const loose = k as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => loose.rope_forward(f(32), f(6), f(6), new Float32Array(2), 1, 2, 2, 1, 4, 3, 0)).toThrow(/expected an Int32Array for positions/);
    expect(() => loose.rope_forward(f(32), f(6), f(6), null, 1, 2, 2, 1, 4, 3)).toThrow(/rope_forward: expected 11 arguments but received 10/);
    expect(() => k.rope_forward(f(32), f(6), f(6), Int32Array.of(2, 0), 1, 2, 2, 1, 4, 3, 0)).not.toThrow();
  });

  test('swiglu and the encoder without a position table', () => {
    expect(() => kernels.swiglu_forward(f(6), f(11), 2, 3)).toThrow(/swiglu_forward: expected inp to hold at least 12/);
    expect(() => kernels.swiglu_forward(f(5), f(12), 2, 3)).toThrow(/out to hold at least 6/);
    expect(() => kernels.swiglu_backward(f(11), f(6), f(12), 2, 3)).toThrow(/swiglu_backward: expected dinp to hold at least 12/);
    expect(() => kernels.swiglu_backward(f(12), f(6), f(12), 2, 0)).toThrow(/for H/);
    const loose = kernels as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => loose.swiglu_backward(null, f(6), f(12), 2, 3)).toThrow(/for dinp/);
    // wpe null: token ids are still checked; positions are not looked at
    expect(() => kernels.encoder_forward(f(8), Int32Array.of(0, 5), null, f(20), null, 1, 2, 4, 0)).toThrow(/tokens\[1\] = 5 is outside \[0, 5\)/);
    expect(() => kernels.encoder_forward(f(8), Int32Array.of(0, 4), Int32Array.of(0, 99), f(20), null, 1, 2, 4, 0)).not.toThrow();
  });
});

describe('arena views', () => {
  test('views must lie inside a live arena', () => {
    const arena = new addon.Arena('cpu', 16);
    expect(arena.numel).toBe(16);
    expect(() => kernels.fill({ arena, offset: 10, numel: 8 }, 1, 8)).toThrow(/view \[10, 18\) lies outside its arena of 16 floats/);
    expect(() => kernels.fill({ arena, offset: -1, numel: 4 }, 1, 4)).toThrow(/whole, non-negative offset/);
    expect(() => kernels.fill({ arena: {} as never, offset: 0, numel: 4 }, 1, 4)).toThrow(/'arena' is a gptune Arena/);
    expect(() => kernels.fill({ arena, offset: 0, numel: 4 }, 1, 5)).toThrow(/x to hold at least 5/);
    kernels.fill({ arena, offset: 4, numel: 4 }, 2, 4);
    expect(Array.from(arena.read(2, 8))).toEqual([0, 0, 2, 2, 2, 2, 0, 0]);
    expect(() => arena.read(10, 8)).toThrow(/range \[10, 18\) is outside the arena of 16 floats/);
    expect(() => arena.write(15, f(2))).toThrow(/outside the arena/);
    const view = arena.data;
    arena.free();
    expect(() => kernels.fill({ arena, offset: 0, numel: 4 }, 1, 4)).toThrow(/freed/);
    expect(() => arena.read(0, 1)).toThrow(/freed/);
    // The zero-copy view keeps its memory alive after free(): reading it must not crash.
    expect(view[4]).toBe(2);
  });

  test('bad arena construction', () => {
    const A = addon.Arena as unknown as new (...a: unknown[]) => unknown;
    expect(() => new A('tpu', 4)).toThrow(/new Arena: expected 'cpu' or 'cuda' for device \(argument 1\) but received the string 'tpu'/);
    expect(() => new A('cpu', -1)).toThrow(/numel/);
    expect(() => new A('cpu', NaN)).toThrow(/numel/);
    if (!addon.cuda.compiled) expect(() => new A('cuda', 4)).toThrow(/built without CUDA/);
  });

  test('memory accounting returns to its baseline after free()', () => {
    const before = addon.memory().cpuBytes;
    const arenas = [1000, 2000, 3000].map((n) => new addon.Arena('cpu', n));
    expect(addon.memory().cpuBytes - before).toBe(4 * 6000);
    arenas.forEach((a) => a.free());
    expect(addon.memory().cpuBytes).toBe(before);
  });
});

test('thread count is validated and applied', () => {
  const n = addon.numThreads();
  expect(() => addon.setNumThreads(0)).toThrow(/threads/);
  expect(() => addon.setNumThreads(1000)).toThrow(/between 1 and 256/);
  addon.setNumThreads(1);
  expect(addon.numThreads()).toBe(1);
  addon.setNumThreads(n);
  expect(addon.numThreads()).toBe(n);
});

describe('the LoRA kernels validate their arguments', () => {
  // N=2 C=3 R=2 OC=4 in rows of ld=6 at offset 1: out/dout reach (N-1)*ld + offset + OC = 11 floats
  const fwd = (over: Record<number, unknown>) => {
    const args: unknown[] = [f(12), f(4), f(6), f(6), f(8), 2, 3, 2, 4, 6, 1, 2, 0.1, 7];
    for (const [i, v] of Object.entries(over)) args[Number(i)] = v;
    return () => (kernels as unknown as Record<string, (...a: unknown[]) => unknown>).lora_forward(...args);
  };
  const bwd = (over: Record<number, unknown>) => {
    const args: unknown[] = [f(6), f(6), f(8), f(4), f(12), f(4), f(6), f(6), f(8), 2, 3, 2, 4, 6, 1, 2, 0.1, 7];
    for (const [i, v] of Object.entries(over)) args[Number(i)] = v;
    return () => (kernels as unknown as Record<string, (...a: unknown[]) => unknown>).lora_backward(...args);
  };

  test('valid calls run; out and dout need only reach the last row\'s adapter columns', () => {
    expect(fwd({})).not.toThrow();
    expect(fwd({ 0: f(11) })).not.toThrow();
    expect(bwd({})).not.toThrow();
    expect(bwd({ 0: null, 1: null, 2: null })).not.toThrow();
    expect(fwd({ 13: 2 ** 53 - 1 })).not.toThrow();
  });

  test('the adapter columns must fit the rows, and buffers must hold their shapes', () => {
    expect(fwd({ 10: 3 })).toThrow(/^lora_forward: offset \+ OC = 7 exceeds ld = 6: the adapter's columns must lie inside each row$/);
    expect(bwd({ 13: 4 })).toThrow(/^lora_backward: offset \+ OC = 5 exceeds ld = 4/);
    expect(fwd({ 0: f(10) })).toThrow(/lora_forward: expected out to hold at least 11 floats for the given dimensions but it holds 10/);
    expect(fwd({ 1: f(3) })).toThrow(/expected u to hold at least 4 floats/);
    expect(fwd({ 3: f(5) })).toThrow(/expected A to hold at least 6 floats/);
    expect(fwd({ 4: f(7) })).toThrow(/expected B to hold at least 8 floats/);
    expect(bwd({ 4: f(10) })).toThrow(/lora_backward: expected dout to hold at least 11 floats/);
    expect(bwd({ 2: f(7) })).toThrow(/expected dB to hold at least 8 floats/);
    expect(bwd({ 3: null })).toThrow(/lora_backward: expected a Float32Array or an \{arena, offset, numel\} view for du \(argument 4\) but received null/);
    expect(fwd({ 7: 0 })).toThrow(/lora_forward: expected a whole number between 1 and 2\^31-1 for R \(argument 8\) but received the number 0/);
    expect(fwd({ 10: -1 })).toThrow(/for offset \(argument 11\) but received the number -1/);
    expect(fwd({ 14: 0 })).toThrow(/lora_forward: expected 14 arguments but received 15/);
  });

  test('dropout is a probability in [0, 1) and scaling a finite number', () => {
    expect(fwd({ 12: 1 })).toThrow(/^lora_forward: dropout must be a probability in \[0, 1\) but it is 1$/);
    expect(fwd({ 12: -0.1 })).toThrow(/dropout must be a probability in \[0, 1\) but it is -0.1/);
    expect(fwd({ 12: 0.999999999 })).toThrow(/dropout must be a probability in \[0, 1\) but it is 0.999999999/);  // 1 in float32
    expect(bwd({ 16: NaN })).toThrow(/lora_backward: expected a finite number for dropout \(argument 17\) but received the number NaN/);
    expect(fwd({ 11: Infinity })).toThrow(/expected a finite number for scaling \(argument 12\)/);
    expect(fwd({ 11: 1e300 })).toThrow(/^lora_forward: scaling must be finite in float32 but it is 1e\+300$/);
  });

  test('seed is a whole number in [0, 2^53-1]: a one-line RangeError otherwise (a TypeError for a non-number)', () => {
    // The addon's errors come from node's own realm, not jest's sandbox: compare names, not classes.
    const thrown = (call: () => unknown) => {
      try {
        call();
      } catch (e) {
        return `${(e as Error).name}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    for (const seed of [-1, 1.5, 2 ** 53, NaN, Infinity]) {
      expect(thrown(fwd({ 13: seed }))).toBe(`RangeError: lora_forward: seed must be a whole number between 0 and 2^53-1 but it is ${seed}`);
    }
    expect(thrown(bwd({ 17: -3 }))).toBe('RangeError: lora_backward: seed must be a whole number between 0 and 2^53-1 but it is -3');
    expect(thrown(fwd({ 13: '7' }))).toBe("TypeError: lora_forward: expected a number for seed (argument 14) but received the string '7'");
    expect(thrown(fwd({ 13: 7n }))).toMatch(/^TypeError: lora_forward: expected a number for seed \(argument 14\)/);
  });
});
