/**
 * A binary heap of (a, b) number pairs kept in two parallel arrays (no object per entry). The top
 * is the pair that `before` puts ahead of every other; ties must be broken inside `before` for the
 * order to be deterministic. Both BPE loops use it: encoding pops the lowest-ranked merge (bpe.ts),
 * training the most frequent pair (bpe_trainer.ts).
 */
export class PairHeap {
  private readonly as: number[] = [];
  private readonly bs: number[] = [];

  /** before(a1, b1, a2, b2): whether pair 1 comes out of the heap ahead of pair 2. */
  constructor(private readonly before: (a1: number, b1: number, a2: number, b2: number) => boolean) {}

  get size(): number {
    return this.as.length;
  }

  /** The top pair's parts (the heap must not be empty). */
  topA(): number {
    return this.as[0];
  }

  topB(): number {
    return this.bs[0];
  }

  private ahead(i: number, j: number): boolean {
    return this.before(this.as[i], this.bs[i], this.as[j], this.bs[j]);
  }

  private swap(i: number, j: number): void {
    [this.as[i], this.as[j]] = [this.as[j], this.as[i]];
    [this.bs[i], this.bs[j]] = [this.bs[j], this.bs[i]];
  }

  push(a: number, b: number): void {
    this.as.push(a);
    this.bs.push(b);
    let child = this.as.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.ahead(child, parent)) break;
      this.swap(child, parent);
      child = parent;
    }
  }

  /** Removes the top pair (read topA() / topB() first). */
  pop(): void {
    const lastA = this.as.pop()!, lastB = this.bs.pop()!;
    if (this.as.length === 0) return;
    this.as[0] = lastA;
    this.bs[0] = lastB;
    let parent = 0;
    for (;;) {
      const left = 2 * parent + 1, right = left + 1;
      let top = parent;
      if (left < this.as.length && this.ahead(left, top)) top = left;
      if (right < this.as.length && this.ahead(right, top)) top = right;
      if (top === parent) break;
      this.swap(parent, top);
      parent = top;
    }
  }
}
