import * as fs from 'fs';
import * as path from 'path';
import {
  encodeSafetensors, halfBitsToFloat, readSafetensors, readSafetensorsHeader, toFloat32, writeSafetensors,
  type SafetensorsDtype, type SafetensorsTensor,
} from '../../lib/io/safetensors';
import { FIXTURES, tempDir, seededRandom } from '../helpers';


/** A safetensors file assembled byte by byte, independently of the writer under test. */
function rawFile(header: unknown, data: Uint8Array | number[] = [], headerLengthOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLengthOverride ?? BigInt(json.length));
  return Buffer.concat([prefix, json, Buffer.from(data)]);
}

function bytesOf(dtype: 'F32' | 'F64', values: number[]): Buffer {
  const size = dtype === 'F32' ? 4 : 8;
  const b = Buffer.alloc(values.length * size);
  values.forEach((v, i) => (dtype === 'F32' ? b.writeFloatLE(v, i * 4) : b.writeDoubleLE(v, i * 8)));
  return b;
}

function tensorOf(dtype: SafetensorsDtype, shape: number[], bytes: Buffer): SafetensorsTensor {
  return { dtype, shape, data: bytes };
}

describe('safetensors round trip', () => {
  let dir: string;
  beforeAll(() => { dir = tempDir('gptune-st-'); });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('F32 tensors of awkward shapes come back bit-exact, with metadata, from a spec-conformant file', () => {
    const random = seededRandom(42);
    const shapes = [[1], [3, 5], [2, 3, 7], [], [0], [4, 0, 3], [13]];
    const tensors = shapes.map((shape, i) => {
      const count = shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: count }, () => (random() - 0.5) * 10 ** (random() * 8 - 4));
      return { name: `t${i}.weight`, shape, data };
    });
    // Values whose bits matter: -0, subnormal, infinities, NaN.
    tensors.push({ name: 'specials', shape: [5], data: new Float32Array([-0, 1e-45, Infinity, -Infinity, NaN]) });
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, tensors, { format: 'pt', note: 'ünïcode ✓' });

    // Layout rules, read straight from the bytes: header padded with spaces to a multiple of 8.
    const raw = fs.readFileSync(file);
    const headerLength = Number(raw.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const headerText = raw.subarray(8, 8 + headerLength).toString('utf8');
    expect(headerText).toMatch(/^\{.*\} *$/s);
    expect(JSON.parse(headerText)['t1.weight']).toEqual({ dtype: 'F32', shape: [3, 5], data_offsets: [4, 64] });

    const read = readSafetensors(file);
    expect(read.metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect([...read.tensors.keys()]).toEqual(tensors.map((t) => t.name));
    for (const t of tensors) {
      const back = read.tensors.get(t.name)!;
      expect(back.dtype).toBe('F32');
      expect(back.shape).toEqual(t.shape);
      const values = toFloat32(back);
      expect(new Uint32Array(values.buffer, values.byteOffset, values.length)).toEqual(new Uint32Array(t.data.buffer));
    }
    // No temporary files are left beside the output.
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  test('readSafetensorsHeader gives names, shapes and absolute data positions without reading data', () => {
    const file = path.join(dir, 'header.safetensors');
    writeSafetensors(file, [
      { name: 'a', shape: [2], data: new Float32Array([1, 2]) },
      { name: 'b', shape: [1, 3], data: new Float32Array([3, 4, 5]) },
    ]);
    const header = readSafetensorsHeader(file);
    expect(header.entries.map((e) => [e.name, e.dtype, e.shape, e.dataOffsets])).toEqual([
      ['a', 'F32', [2], [0, 8]], ['b', 'F32', [1, 3], [8, 20]],
    ]);
    expect(header.dataStart % 8).toBe(0);
    expect(header.dataStart + header.dataLength).toBe(fs.statSync(file).size);
    expect(fs.readFileSync(file).readFloatLE(header.dataStart + 8)).toBe(3);
  });

  test('the writer rejects inconsistent tensors with a message naming the tensor', () => {
    const file = path.join(dir, 'bad.safetensors');
    expect(() => writeSafetensors(file, [{ name: 'w', shape: [2, 3], data: new Float32Array(5) }]))
      .toThrow(`${file}: tensor "w": shape [2, 3] needs 6 values but data has 5`);
    expect(() => writeSafetensors(file, [{ name: 'w', shape: [1], data: new Float32Array(1) }, { name: 'w', shape: [1], data: new Float32Array(1) }]))
      .toThrow(`${file}: tensor "w": name appears twice`);
    expect(() => writeSafetensors(file, [{ name: 'w', shape: [1.5], data: new Float32Array(1) }])).toThrow(/tensor "w": shape must be an array of non-negative integers/);
    expect(() => writeSafetensors(file, [{ name: '__metadata__', shape: [1], data: new Float32Array(1) }])).toThrow(/non-empty tensor name other than "__metadata__"/);
    expect(fs.existsSync(file)).toBe(false);
  });

  test('encodeSafetensors views the tensor memory instead of copying it', () => {
    const data = new Float32Array([1, 2, 3]);
    const chunks = encodeSafetensors([{ name: 'x', shape: [3], data }]);
    expect(chunks).toHaveLength(2);
    expect(chunks[1].buffer).toBe(data.buffer);
  });
});

describe('dtype conversion to float32', () => {
  const halves = (bits: number[]) => tensorOf('F16', [bits.length], Buffer.from(new Uint16Array(bits).buffer));
  const bfloats = (bits: number[]) => tensorOf('BF16', [bits.length], Buffer.from(new Uint16Array(bits).buffer));

  test('F16 bit patterns computed by hand', () => {
    const cases: Array<[number, number]> = [
      [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
      [0x0400, 2 ** -14], [0x3555, 0.333251953125], [0x3bff, 0.99951171875], [0x7c00, Infinity],
      [0xfc00, -Infinity], [0x0000, 0],
    ];
    const out = toFloat32(halves(cases.map(([bits]) => bits)));
    cases.forEach(([, expected], i) => expect(out[i]).toBe(expected));
    const signed = toFloat32(halves([0x8000, 0x7e00, 0xfc01]));
    expect(Object.is(signed[0], -0)).toBe(true);
    expect(Number.isNaN(signed[1]) && Number.isNaN(signed[2])).toBe(true);
  });

  test('all 65536 F16 patterns agree with a bit-level float32 construction', () => {
    // Reference: place sign, re-biased exponent (15 -> 127) and mantissa into float32 bits;
    // subnormals are normalised by shifting the mantissa until its implicit bit appears.
    const expectedBits = (h: number): number => {
      const sign = (h & 0x8000) << 16;
      let exponent = (h >> 10) & 0x1f;
      let mantissa = h & 0x3ff;
      if (exponent === 31) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
      if (exponent === 0) {
        if (mantissa === 0) return sign >>> 0;
        exponent = 1;
        while ((mantissa & 0x400) === 0) { mantissa <<= 1; exponent--; }
        mantissa &= 0x3ff;
      }
      return (sign | ((exponent - 15 + 127) << 23) | (mantissa << 13)) >>> 0;
    };
    const all = Array.from({ length: 65536 }, (_, h) => h);
    const out = toFloat32(halves(all));
    const outBits = new Uint32Array(out.buffer);
    let mismatches = 0;
    for (const h of all) {
      const expected = expectedBits(h);
      const isNaN = (expected & 0x7f800000) === 0x7f800000 && (expected & 0x7fffff) !== 0;
      if (isNaN ? !Number.isNaN(out[h]) : outBits[h] !== expected) mismatches++;
      if (!isNaN && !Object.is(halfBitsToFloat(h), out[h])) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  test('BF16 bit patterns computed by hand', () => {
    const out = toFloat32(bfloats([0x3f80, 0xc000, 0x4049, 0x7f80, 0xff80, 0x0001, 0x8000, 0x7fc0]));
    expect(Array.from(out.subarray(0, 6))).toEqual([1, -2, 3.140625, Infinity, -Infinity, 2 ** -133]);
    expect(Object.is(out[6], -0)).toBe(true);
    expect(Number.isNaN(out[7])).toBe(true);
  });

  test('F64 and integer dtypes convert by value (rounded to float32)', () => {
    const f64 = toFloat32(tensorOf('F64', [4], bytesOf('F64', [1.5, -2.25, 1e300, 0.1])));
    expect(Array.from(f64)).toEqual([1.5, -2.25, Infinity, Math.fround(0.1)]);
    const i64 = Buffer.alloc(24);
    i64.writeBigInt64LE(-5n, 0); i64.writeBigInt64LE(2n ** 40n, 8); i64.writeBigInt64LE(2n ** 62n + 1n, 16);
    expect(Array.from(toFloat32(tensorOf('I64', [3], i64)))).toEqual([-5, 2 ** 40, 2 ** 62]);
    const u64 = Buffer.alloc(8); u64.writeBigUInt64LE(2n ** 64n - 1n, 0);
    expect(toFloat32(tensorOf('U64', [1], u64))[0]).toBe(2 ** 64);
    const i32 = Buffer.alloc(8); i32.writeInt32LE(-7, 0); i32.writeInt32LE(2147483647, 4);
    expect(Array.from(toFloat32(tensorOf('I32', [2], i32)))).toEqual([-7, 2147483648]);
    const u32 = Buffer.alloc(4); u32.writeUInt32LE(4000000000, 0);
    expect(toFloat32(tensorOf('U32', [1], u32))[0]).toBe(4000000000);
    const i16 = Buffer.alloc(4); i16.writeInt16LE(-32768, 0); i16.writeInt16LE(123, 2);
    expect(Array.from(toFloat32(tensorOf('I16', [2], i16)))).toEqual([-32768, 123]);
    const u16 = Buffer.alloc(2); u16.writeUInt16LE(65535, 0);
    expect(toFloat32(tensorOf('U16', [1], u16))[0]).toBe(65535);
    expect(Array.from(toFloat32(tensorOf('I8', [3], Buffer.from([0x80, 0xff, 7]))))).toEqual([-128, -1, 7]);
    expect(Array.from(toFloat32(tensorOf('U8', [3], Buffer.from([0x80, 0xff, 7]))))).toEqual([128, 255, 7]);
    expect(Array.from(toFloat32(tensorOf('BOOL', [3], Buffer.from([0, 1, 2]))))).toEqual([0, 1, 1]);
  });

  test('tensor bytes at an unaligned offset are converted correctly', () => {
    const backing = Buffer.alloc(1 + 12);
    backing.writeFloatLE(1.25, 1); backing.writeFloatLE(-3, 5); backing.writeFloatLE(7.5, 9);
    expect(Array.from(toFloat32(tensorOf('F32', [3], backing.subarray(1))))).toEqual([1.25, -3, 7.5]);
    const f64 = Buffer.alloc(1 + 8);
    f64.writeDoubleLE(2.5, 1);
    expect(Array.from(toFloat32(tensorOf('F64', [1], f64.subarray(1))))).toEqual([2.5]);
  });

  test('the F16/BF16 fixture weights are the round-to-nearest of the F32 fixture weights (PyTorch .half()/.bfloat16())', () => {
    const f32 = readSafetensors(path.join(FIXTURES, 'tiny-gpt2', 'model.safetensors')).tensors;
    const bfloatBits = (x: number) => { const b = Buffer.alloc(4); b.writeFloatLE(x); return b.readUInt32LE(0) >>> 16; };
    const bfloatValue = (bits: number) => { const b = Buffer.alloc(4); b.writeUInt32LE((bits << 16) >>> 0); return b.readFloatLE(0); };
    for (const [variant, dtype] of [['tiny-gpt2-f16', 'F16'], ['tiny-gpt2-bf16', 'BF16']] as const) {
      const low = readSafetensors(path.join(FIXTURES, variant, 'model.safetensors')).tensors;
      expect([...low.keys()].sort()).toEqual([...f32.keys()].sort());
      let checked = 0;
      const notNearest: string[] = [];
      for (const [name, tensor] of low) {
        expect(tensor.dtype).toBe(dtype);
        const exact = toFloat32(f32.get(name)!);
        const rounded = toFloat32(tensor);
        const bits = new Uint16Array(tensor.data.buffer, tensor.data.byteOffset, rounded.length);
        const valueOf = dtype === 'F16' ? halfBitsToFloat : bfloatValue;
        for (let i = 0; i < exact.length; i++) {
          // Nearest: no neighbouring bit pattern is strictly closer to the float32 value.
          const error = Math.abs(exact[i] - rounded[i]);
          for (const neighbour of [bits[i] - 1, bits[i] + 1]) {
            const alternative = neighbour >= 0 && neighbour <= 0xffff ? valueOf(neighbour) : NaN;
            if (Number.isFinite(alternative) && Math.abs(exact[i] - alternative) < error) notNearest.push(`${name}[${i}]`);
          }
          // BF16 is float32's top half: the rounded pattern is the truncated one or the next.
          if (dtype === 'BF16' && Math.abs(bits[i] - bfloatBits(exact[i])) > 1) notNearest.push(`${name}[${i}] bits`);
          checked++;
        }
      }
      expect(notNearest.slice(0, 5)).toEqual([]);
      expect(checked).toBeGreaterThan(10000);
    }
  });
});

describe('malformed safetensors files', () => {
  let dir: string;
  beforeAll(() => { dir = tempDir('gptune-st-bad-'); });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  let counter = 0;
  /** Write `bytes` to a fresh file and return the error message reading it throws. */
  const readError = (bytes: Buffer): { file: string; message: string } => {
    const file = path.join(dir, `case${counter++}.safetensors`);
    fs.writeFileSync(file, bytes);
    try {
      readSafetensors(file);
    } catch (err) {
      return { file, message: (err as Error).message };
    }
    throw new Error(`${file}: expected readSafetensors to reject this file`);
  };
  const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const eightBytes = new Array(8).fill(0);

  const cases: Array<[string, Buffer, RegExp]> = [
    ['file shorter than 8 bytes', Buffer.from([1, 2, 3, 4, 5]), /file is 5 bytes, too short for the 8-byte safetensors header length/],
    ['absurd header length', rawFile({}, [], 2n ** 40n), /header length 1099511627776 is larger than the 100000000-byte limit/],
    ['header length past the end', rawFile('{}', [], 1000n), /header length 1000 reaches past the end of the 10-byte file/],
    ['header not UTF-8', Buffer.concat([rawFile('{}', [], 3n).subarray(0, 8), Buffer.from([0x7b, 0xff, 0x7d])]), /header is not valid UTF-8/],
    ['header not JSON', rawFile('{"a": '), /header is not valid JSON/],
    ['header an array', rawFile('[]'), /header must be a JSON object but is an array/],
    ['header null', rawFile('null'), /header must be a JSON object but is null/],
    ['entry not an object', rawFile({ w: 5 }), /tensor "w": expected an object \{dtype, shape, data_offsets\} but received 5/],
    ['missing dtype', rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, eightBytes), /tensor "w": missing "dtype"/],
    ['missing shape', rawFile({ w: { dtype: 'F32', data_offsets: [0, 8] } }, eightBytes), /tensor "w": missing "shape"/],
    ['missing data_offsets', rawFile({ w: { dtype: 'F32', shape: [2] } }, eightBytes), /tensor "w": missing "data_offsets"/],
    ['unknown dtype', rawFile({ w: entry('Q4_K', [2], [0, 8]) }, eightBytes), /tensor "w": unknown dtype "Q4_K" \(supported: F64, F32, F16, BF16/],
    ['negative dim', rawFile({ w: entry('F32', [-2], [0, 8]) }, eightBytes), /tensor "w": shape must be an array of non-negative integers but is \[-2\]/],
    ['fractional dim', rawFile({ w: entry('F32', [1.5], [0, 8]) }, eightBytes), /tensor "w": shape must be an array of non-negative integers but is \[1.5\]/],
    ['string dim', rawFile({ w: entry('F32', ['2'], [0, 8]) }, eightBytes), /tensor "w": shape must be an array of non-negative integers/],
    ['one offset', rawFile({ w: entry('F32', [2], [8]) }, eightBytes), /tensor "w": data_offsets must be two non-negative integers \[begin, end\] but is \[8\]/],
    ['negative offset', rawFile({ w: entry('F32', [2], [-8, 0]) }, eightBytes), /tensor "w": data_offsets must be two non-negative integers/],
    ['end before begin', rawFile({ w: entry('F32', [0], [8, 4]) }, eightBytes), /tensor "w": data_offsets \[8, 4\] end before they begin/],
    ['offsets past the data', rawFile({ w: entry('F32', [4], [0, 16]) }, eightBytes), /tensor "w": data_offsets \[0, 16\] reach past the end of the 8-byte data buffer/],
    ['byte count does not match shape', rawFile({ w: entry('F32', [3], [0, 8]) }, eightBytes), /tensor "w": data_offsets \[0, 8\] hold 8 bytes but F32 shape \[3\] needs 12/],
    ['element count overflows', rawFile({ w: entry('F32', [2 ** 30, 2 ** 30, 2 ** 30], [0, 8]) }, eightBytes), /tensor "w": shape \[1073741824, 1073741824, 1073741824\] has more elements than can be addressed/],
    ['overlapping tensors', rawFile({ a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) }, new Array(12).fill(0)), /tensor "b" data_offsets \[4, 12\] overlap tensor "a" \[0, 8\]/],
    ['hole between tensors', rawFile({ a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) }, new Array(12).fill(0)), /tensor "b" starts at data offset 8 but the data before it ends at 4 \(the format allows no holes\)/],
    ['trailing bytes', rawFile({ a: entry('F32', [1], [0, 4]) }, eightBytes), /tensors cover 4 bytes of the 8-byte data buffer; the remaining 4 bytes belong to no tensor/],
    ['metadata not an object', rawFile({ __metadata__: 'x' }), /"__metadata__" must be an object of strings but is "x"/],
    ['metadata value not a string', rawFile({ __metadata__: { step: 5 } }), /"__metadata__" value for "step" must be a string but is 5/],
  ];

  test.each(cases)('%s', (_, bytes, expected) => {
    const { file, message } = readError(bytes);
    expect(message).toMatch(expected);
    expect(message.startsWith(`${file}: `)).toBe(true);
    expect(message).not.toContain('\n');
  });

  test('a hand-built file with zero-size tensors at shared offsets is valid', () => {
    const file = path.join(dir, 'empty-tensors.safetensors');
    fs.writeFileSync(file, rawFile({
      e1: entry('F32', [0], [0, 0]), a: entry('F16', [2], [0, 4]), e2: entry('I64', [3, 0], [4, 4]),
      b: entry('U8', [4], [4, 8]), __metadata__: { k: 'v' },
    }, [0x00, 0x3c, 0x00, 0xc0, 9, 8, 7, 6]));
    const { tensors, metadata } = readSafetensors(file);
    expect(metadata).toEqual({ k: 'v' });
    expect(Array.from(toFloat32(tensors.get('a')!))).toEqual([1, -2]);
    expect(Array.from(toFloat32(tensors.get('b')!))).toEqual([9, 8, 7, 6]);
    expect(toFloat32(tensors.get('e2')!).length).toBe(0);
  });

  test('random corruption of a valid file gives either a valid result or a one-line error naming the file', () => {
    const good = path.join(dir, 'good.safetensors');
    writeSafetensors(good, [
      { name: 'wte.weight', shape: [5, 3], data: Float32Array.from({ length: 15 }, (_, i) => i + 0.5) },
      { name: 'ln_f.bias', shape: [3], data: new Float32Array([1, 2, 3]) },
    ], { format: 'pt' });
    const original = fs.readFileSync(good);
    const random = seededRandom(7);
    const file = path.join(dir, 'fuzz.safetensors');
    let rejected = 0;
    for (let trial = 0; trial < 400; trial++) {
      const bytes = Buffer.from(original);
      if (trial % 4 === 0) {
        fs.writeFileSync(file, bytes.subarray(0, Math.floor(random() * bytes.length)));
      } else {
        // Flip 1-3 bytes, mostly inside the length prefix and header where structure lives.
        const flips = 1 + Math.floor(random() * 3);
        for (let k = 0; k < flips; k++) {
          const at = Math.floor(random() * (random() < 0.8 ? 8 + Number(original.readBigUInt64LE(0)) : bytes.length));
          bytes[at] = Math.floor(random() * 256);
        }
        fs.writeFileSync(file, bytes);
      }
      try {
        readSafetensors(file);
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        const message = (err as Error).message;
        expect(message.startsWith(`${file}: `)).toBe(true);
        expect(message).not.toContain('\n');
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(200);
  });
});
