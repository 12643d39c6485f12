/**
 * Nothing from JavaScript may crash the process through the addon, however hostile the caller:
 * getters that free arenas, shrink or transfer buffers while the arguments of a call are being
 * read, and workers terminated in the middle of a kernel. Each case runs in a child process (a
 * crash there must not take jest with it) and must end normally with the expected one-line error.
 */
import { spawnSync } from 'child_process';
import { addon, addonPath } from '../../lib/native';

interface Outcome {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs `body` in a fresh node with `addon` loaded from the same build as this test. */
function runChild(body: string, timeoutMs = 60000): Outcome {
  const script = `const addon = require(process.env.GPTUNE_ADDON);\nconst k = addon.kernels;\n${body}`;
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { ...process.env, GPTUNE_ADDON: addonPath },
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** The child must exit 0 (no signal) and print exactly one caught error matching `pattern`. */
function expectCaught(o: Outcome, pattern: RegExp): void {
  expect({ signal: o.signal, status: o.status, stderr: o.stderr }).toEqual({ signal: null, status: 0, stderr: '' });
  const lines = o.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

// Prints the message of the error `call` throws, or "no error".
const attempt = `function attempt(call) { try { call(); console.log('no error'); } catch (e) { console.log(e.constructor.name + ': ' + e.message); } }\n`;

describe('getters that change memory while arguments are read', () => {
  test('an arena freed by a getter of a later argument is refused, not written', () => {
    // out is resolved first; weight's numel getter frees out's arena and churns the heap so that
    // freed memory is reused. The kernel must not run.
    const o = runChild(`${attempt}
      const N = 64, C = 64, OC = 64;
      const outArena = new addon.Arena('cpu', N * OC);
      const out = { arena: outArena, offset: 0, numel: N * OC };
      const inp = new Float32Array(N * C).fill(1);
      const weight = { arena: new addon.Arena('cpu', OC * C), offset: 0,
        get numel() { outArena.free(); for (let i = 0; i < 16; i++) new addon.Arena('cpu', N * OC).fill(7); return OC * C; } };
      attempt(() => k.matmul_forward(out, inp, weight, null, N, C, OC));`);
    expectCaught(o, /^RangeError: matmul_forward: out refers to an arena that was freed$/);
  });

  test('lora_forward and lora_backward refuse an out/dout arena freed by a later argument\'s getter', () => {
    // N=4 C=8 R=2 OC=8 in rows of ld=16 at offset 4; B's numel getter frees the packed output's arena.
    const o = runChild(`${attempt}
      const N = 4, C = 8, R = 2, OC = 8, ld = 16;
      for (const kernel of ['lora_forward', 'lora_backward']) {
        const packed = new addon.Arena('cpu', N * ld);
        const view = { arena: packed, offset: 0, numel: N * ld };
        const B = { arena: new addon.Arena('cpu', OC * R), offset: 0,
          get numel() { packed.free(); for (let i = 0; i < 16; i++) new addon.Arena('cpu', N * ld).fill(7); return OC * R; } };
        const f = (n) => new Float32Array(n).fill(0.5);
        if (kernel === 'lora_forward') attempt(() => k.lora_forward(view, f(N * R), f(N * C), f(R * C), B, N, C, R, OC, ld, 4, 2, 0.1, 9));
        else attempt(() => k.lora_backward(null, f(R * C), f(OC * R), f(N * R), view, f(N * R), f(N * C), f(R * C), B, N, C, R, OC, ld, 4, 2, 0.1, 9));
      }`);
    expect(o.signal).toBeNull();
    expect(o.stdout.trim().split('\n')).toEqual([
      'RangeError: lora_forward: out refers to an arena that was freed',
      'RangeError: lora_backward: dout refers to an arena that was freed',
    ]);
  });

  test('a block pinned by a call is released when the call ends (no leak)', () => {
    // free() during a call leaves the block alive only until the call returns or throws.
    const o = runChild(`
      const before = addon.memory().cpuBytes;
      const a = new addon.Arena('cpu', 1024), b = new addon.Arena('cpu', 1024);
      const x = { arena: a, offset: 0, numel: 1024 };
      const y = { arena: b, offset: 0, get numel() { a.free(); b.free(); return 1024; } };
      try { k.add_inplace(x, y, 1024); } catch (e) { console.log(e.message); }
      console.log(addon.memory().cpuBytes - before);`);
    expect(o.signal).toBeNull();
    expect(o.stdout.trim().split('\n')).toEqual(['add_inplace: dst refers to an arena that was freed', '0']);
  });

  test('an arena freed by the offset getter of its own view is refused', () => {
    const o = runChild(`${attempt}
      const arena = new addon.Arena('cpu', 1 << 16);
      const x = { arena, get offset() { arena.free(); return 0; }, numel: 1 << 16 };
      attempt(() => k.fill(x, 1, 1 << 16));`);
    expectCaught(o, /^RangeError: fill: x refers to an arena that was freed$/);
  });

  test('each property of a view is read exactly once per call', () => {
    const o = runChild(`
      const reads = { arena: 0, offset: 0, numel: 0 };
      const arena = new addon.Arena('cpu', 8);
      const x = { get arena() { reads.arena++; return arena; }, get offset() { reads.offset++; return 0; }, get numel() { reads.numel++; return 8; } };
      k.residual_forward(x, x, x, 8);
      console.log(JSON.stringify(reads));`);
    expect(o.signal).toBeNull();
    expect(JSON.parse(o.stdout)).toEqual({ arena: 3, offset: 3, numel: 3 });
  });

  test('a resizable ArrayBuffer shrunk by a getter is refused', () => {
    const o = runChild(`${attempt}
      const buf = new ArrayBuffer(4 << 20, { maxByteLength: 4 << 20 });
      const dst = new Float32Array(buf);
      const src = { arena: new addon.Arena('cpu', 1 << 20), offset: 0, get numel() { buf.resize(0); return 1 << 20; } };
      attempt(() => k.add_inplace(dst, src, 1 << 20));`);
    expectCaught(o, /^RangeError: add_inplace: dst \(argument 1\) is backed by a resizable ArrayBuffer or growable SharedArrayBuffer, which is refused/);
  });

  test('resizable and growable buffers are refused even when left alone', () => {
    const o = runChild(`${attempt}
      attempt(() => k.fill(new Float32Array(new ArrayBuffer(16, { maxByteLength: 64 })), 1, 4));
      attempt(() => k.fill(new Float32Array(new SharedArrayBuffer(16, { maxByteLength: 64 })), 1, 4));
      attempt(() => k.encoder_forward(new Float32Array(4), new Int32Array(new ArrayBuffer(4, { maxByteLength: 8 })), null, new Float32Array(4), new Float32Array(4), 1, 1, 4, 0));
      attempt(() => new addon.Arena('cpu', 4).write(0, new Float32Array(new ArrayBuffer(16, { maxByteLength: 64 }))));
      attempt(() => k.fill(new Float32Array(new SharedArrayBuffer(16)), 2, 4));`);
    expect(o.signal).toBeNull();
    expect(o.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^RangeError: fill: x \(argument 1\) is backed by a resizable ArrayBuffer/),
      expect.stringMatching(/^RangeError: fill: x \(argument 1\) is backed by a resizable ArrayBuffer or growable SharedArrayBuffer/),
      expect.stringMatching(/^RangeError: encoder_forward: tokens \(argument 2\) is backed by a resizable/),
      expect.stringMatching(/^RangeError: arena.write: src \(argument 2\) is backed by a resizable/),
      'no error',
    ]);
  });

  test('a buffer transferred by a getter (structuredClone) is refused as detached', () => {
    const o = runChild(`${attempt}
      const dst = new Float32Array(1 << 20);
      const src = { arena: new addon.Arena('cpu', 1 << 20), offset: 0,
        get numel() { structuredClone(dst.buffer, { transfer: [dst.buffer] }); return 1 << 20; } };
      attempt(() => k.add_inplace(dst, src, 1 << 20));`);
    expectCaught(o, /^RangeError: add_inplace: dst \(argument 1\) is a view of a detached ArrayBuffer \(it was transferred or detached\)/);
  });

  const transferAvailable = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
  (transferAvailable ? test : test.skip)('a buffer transferred by a getter (ArrayBuffer.prototype.transfer) is refused', () => {
    const o = runChild(`${attempt}
      const targets = new Int32Array(4);
      const logits = { arena: new addon.Arena('cpu', 40), offset: 0, get numel() { targets.buffer.transfer(); return 40; } };
      attempt(() => k.crossentropy_forward(new Float32Array(4), new Float32Array(4), null, logits, targets, 4, 10, -100));`);
    expectCaught(o, /^RangeError: crossentropy_forward: targets \(argument 5\) is a view of a detached ArrayBuffer/);
  });

  test('a look-alike arena (prototype, Symbol.hasInstance) is never reinterpreted', () => {
    const o = runChild(`${attempt}
      Object.defineProperty(addon.Arena, Symbol.hasInstance, { value: () => true });
      attempt(() => k.fill({ arena: Object.create(addon.Arena.prototype), offset: 0, numel: 4 }, 1, 4));
      attempt(() => k.fill({ arena: { numel: 1e9 }, offset: 0, numel: 4 }, 1, 4));
      attempt(() => addon.Arena.prototype.read.call({}, 0, 1));`);
    expect(o.signal).toBeNull();
    expect(o.stdout.trim().split('\n')).toEqual([
      "TypeError: fill: expected a view whose 'arena' is a gptune Arena for x (argument 1) but received an object",
      "TypeError: fill: expected a view whose 'arena' is a gptune Arena for x (argument 1) but received an object",
      'TypeError: Illegal invocation',
    ]);
  });
});

describe('worker threads', () => {
  test('terminating a worker in the middle of kernels never aborts the process', () => {
    // Each worker runs matmuls (tens of milliseconds each) on arena views in a loop; terminate()
    // lands inside a kernel or between property reads. 20 rounds at staggered delays.
    const o = runChild(`
      const { Worker } = require('worker_threads');
      const src = \`
        const addon = require(process.env.GPTUNE_ADDON);
        const N = 256, C = 512, OC = 512;
        const view = (n) => ({ arena: new addon.Arena('cpu', n), offset: 0, numel: n });
        const out = view(N * OC), inp = view(N * C), w = view(OC * C);
        require('worker_threads').parentPort.postMessage('ready');
        for (;;) addon.kernels.matmul_forward(out, inp, w, null, N, C, OC);\`;
      (async () => {
        for (let i = 0; i < 20; i++) {
          const worker = new Worker(src, { eval: true });
          await new Promise((resolve) => worker.once('message', resolve));
          await new Promise((resolve) => setTimeout(resolve, 1 + (i % 7)));
          await worker.terminate();
        }
        console.log('20 workers terminated');
      })();`, 120000);
    expect({ signal: o.signal, status: o.status, stderr: o.stderr }).toEqual({ signal: null, status: 0, stderr: '' });
    expect(o.stdout.trim()).toBe('20 workers terminated');
  });
});

describe('Arena sizes', () => {
  const A = addon.Arena as unknown as new (...a: unknown[]) => { numel: number; free(): void };
  test.each([
    [-1, 'the number -1'],
    [NaN, 'the number NaN'],
    [1.5, 'the number 1.5'],
    [Infinity, 'the number Infinity'],
    [2 ** 40 + 1, 'the number 1099511627777'],
    [1e300, 'the number 1e\\+300'],
    ['5', "the string '5'"],
    [undefined, 'undefined'],
  ])('numel %p is refused with a one-line error naming the argument, the range and the value', (numel, received) => {
    let error: Error | undefined;
    try {
      new A('cpu', numel);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.name).toBe('TypeError');
    expect(error?.message).toMatch(new RegExp(`^new Arena: expected a whole number between 0 and 2\\^40 for numel \\(argument 2\\) but received ${received}$`));
  });

  test('an allocation that cannot succeed says how many MiB were asked', () => {
    expect(() => new A('cpu', 2 ** 40)).toThrow(/^new Arena: out of memory: could not allocate 4194304 MiB \(1099511627776 floats\) on the CPU/);
    expect(() => new A('cpu', 2 ** 40)).not.toThrow(/\n/);
  });

  test('zero and small sizes work, and calling Arena without new is an error', () => {
    expect(new A('cpu', 0).numel).toBe(0);
    expect(new A('cpu', 1).numel).toBe(1);
    expect(() => (addon.Arena as unknown as (...a: unknown[]) => unknown)('cpu', 4)).toThrow(/^Arena: use new Arena\(device, numel\)$/);
  });
});
