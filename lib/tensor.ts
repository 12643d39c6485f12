/**
 * Tensors are views into native arenas: TypeScript never owns float storage, it lays out named
 * views, allocates one arena for all of them, and hands {arena, offset, numel} to the kernels.
 */
import { addon, ArenaHandle, DeviceName, TensorRef } from './native';

/** Offsets are rounded to 16 floats (64 bytes) so every tensor starts on a cache line. */
const ALIGN_FLOATS = 16;

export class Tensor implements TensorRef {
  constructor(
    readonly arena: ArenaHandle,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly name: string,
  ) {
    this.numel = shape.reduce((a, b) => a * b, 1);
  }
  readonly numel: number;

  /** A copy of the contents on the host. */
  read(): Float32Array {
    return this.arena.read(this.offset, this.numel);
  }

  write(values: Float32Array): void {
    if (values.length !== this.numel) {
      throw new Error(`tensor ${this.name}: expected ${this.numel} values (shape [${this.shape.join(', ')}]) but received ${values.length}`);
    }
    this.arena.write(this.offset, values);
  }

  fill(value: number): void {
    this.arena.fill(value, this.offset, this.numel);
  }

  /** CPU arenas only: a zero-copy view (valid while the arena lives). */
  view(): Float32Array {
    return this.arena.data.subarray(this.offset, this.offset + this.numel);
  }

  /** A sub-range of this tensor (same arena), e.g. the first B*T rows of an activation. */
  slice(startElement: number, shape: readonly number[], name = this.name): Tensor {
    const numel = shape.reduce((a, b) => a * b, 1);
    if (startElement < 0 || startElement + numel > this.numel) {
      throw new RangeError(`tensor ${this.name}: slice [${startElement}, ${startElement + numel}) is outside its ${this.numel} elements`);
    }
    return new Tensor(this.arena, this.offset + startElement, shape, name);
  }
}

/** Typed arrays of quantized or bf16 weights, which kernels also take as arena views. */
export type ElementArray = Int8Array | Uint8Array | Uint16Array;

/** The arena float slots (4 bytes each) that hold `bytes` bytes. */
export function floatSlots(bytes: number): number {
  return Math.ceil(bytes / 4);
}

/**
 * Copies an element array's bytes into arena slots [offset, offset + floatSlots(byteLength)) (the
 * last slot zero-padded) and returns that view, on any device: how a quantized base reaches a GPU.
 */
export function writeElements(arena: ArenaHandle, offset: number, values: ElementArray): TensorRef {
  const numel = floatSlots(values.byteLength);
  const bytes = new Uint8Array(numel * 4);
  bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  arena.write(offset, new Float32Array(bytes.buffer));
  return { arena, offset, numel };
}

/** A host copy of the first `length` elements an arena view holds, as the given typed array type. */
export function readElements<T extends ElementArray>(
  ref: TensorRef, type: { new (buffer: ArrayBuffer, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number }, length: number,
): T {
  if (length * type.BYTES_PER_ELEMENT > ref.numel * 4) {
    throw new RangeError(`readElements: ${length} elements of ${type.BYTES_PER_ELEMENT} bytes do not fit the view's ${ref.numel} float slots`);
  }
  const floats = ref.arena.read(ref.offset, ref.numel);
  return new type(floats.buffer as ArrayBuffer, floats.byteOffset, length);
}

export interface TensorSpec {
  name: string;
  shape: readonly number[];
}

/** Float offsets of each spec in an arena (16-float aligned) and the arena's total floats. */
export function arenaLayout(specs: readonly TensorSpec[]): { offsets: number[]; numel: number } {
  let offset = 0;
  const offsets: number[] = [];
  for (const spec of specs) {
    for (const d of spec.shape) {
      if (!Number.isInteger(d) || d < 0) throw new RangeError(`tensor ${spec.name}: bad dimension ${d} in shape [${spec.shape.join(', ')}]`);
    }
    offsets.push(offset);
    const n = spec.shape.reduce((a, b) => a * b, 1);
    offset += Math.ceil(n / ALIGN_FLOATS) * ALIGN_FLOATS;
  }
  return { offsets, numel: offset };
}

/** Bytes of the arena that TensorArena would allocate for these specs (padding included). */
export function arenaBytes(specs: readonly TensorSpec[]): number {
  return arenaLayout(specs).numel * 4;
}

/** A set of named tensors living in one arena. */
export class TensorArena<K extends string = string> {
  readonly arena: ArenaHandle;
  readonly tensors: Map<K, Tensor>;
  /** Total floats including alignment padding. */
  readonly numel: number;

  constructor(device: DeviceName, specs: readonly TensorSpec[]) {
    const { offsets, numel } = arenaLayout(specs);
    this.numel = numel;
    this.arena = new addon.Arena(device, numel);
    this.tensors = new Map();
    specs.forEach((spec, i) => {
      if (this.tensors.has(spec.name as K)) throw new Error(`duplicate tensor name ${spec.name}`);
      this.tensors.set(spec.name as K, new Tensor(this.arena, offsets[i], spec.shape, spec.name));
    });
  }

  get(name: K): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no tensor named ${name}`);
    return t;
  }

  /** The whole arena as one flat tensor (for global reductions such as the gradient norm). */
  all(): Tensor {
    return new Tensor(this.arena, 0, [this.numel], 'all');
  }

  get bytes(): number {
    return this.numel * 4;
  }

  free(): void {
    this.arena.free();
  }
}
