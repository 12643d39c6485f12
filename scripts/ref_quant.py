"""Reference values for gptune's quantized frozen-weight formats, computed in numpy float32 step by step from the
published definitions (not from native/cpu/quant.cc, nor test/reference/quant.ts):

  int8 (bitsandbytes int8_vectorwise_quant, LLM.int8()): per output row, absmax = max |w|,
      q = round_half_even(w * (127 / absmax)) (torch.round), gptune stores scale = absmax / 127 and dequantizes
      q * scale. (bitsandbytes' own int8_vectorwise_dequant computes q * absmax * fl32(1/127): recorded beside.)
  NF4 (QLoRA, Dettmers et al. 2023, appendix E; bitsandbytes quantize_4bit): the 16 NormalFloat values, blocks of
      64 over the flattened weight (the last one partial), x = w * (1 / absmax) in float32, the code of the nearest
      value (x above the float32 midpoint of two neighbours takes the upper one: torch.bucketize over the midpoints,
      as bitsandbytes' default backend; its CUDA dQuantizeNF4 tree has the same thresholds), two codes a byte with
      the earlier element in the high nibble (an odd n leaves the last low nibble 0).
  Double quantization (compress_statistics): offset = mean of the block absmax values (the float32 nearest to the
      exact mean), then quantize_blockwise of (absmax - offset) in blocks of 256 with the signed dynamic 8-bit map
      create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): absmax2 = max |.| per block, code of the
      nearest map value to (absmax - offset) * (1 / absmax2). Dequantized: absmax' = map[qabsmax] * absmax2 + offset,
      w' = nf4[code] * absmax', every product and sum rounded to float32.

    /usr/bin/python3 scripts/ref_quant.py [--out test/fixtures]

writes quant-ref.json (everything for the small cases, the scalars of the large one) and quant-ref.safetensors
(the large case's weight, packed codes and dequantized values). Checks itself against the other ways the same
definitions are computed (argmin over distances, the CUDA decision tree and binary search, division for the
tail block, torch's float32 mean) and records where they could differ. Seeded; reruns write identical files.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_safetensors, save_safetensors  # noqa: E402

f32 = np.float32
NF4_BLOCK = 64       # weights per absmax
STATS_BLOCK = 256    # absmax values per absmax2

# QLoRA's NormalFloat4 values as bitsandbytes lists them (functional.py get_4bit_type("nf4")).
NF4_CODE = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                     0.7229568362236023, 1.0], dtype=f32)

# bitsandbytes' CUDA dQuantizeNF4 decision tree thresholds (x > t takes the upper branch), in code order.
NF4_CUDA_THRESHOLDS = np.array([-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
                                -0.23460740596055984, -0.13791173323988914, -0.045525018125772476,
                                0.03979014977812767, 0.1202552504837513, 0.2035212516784668, 0.2920137718319893,
                                0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011],
                               dtype=f32)


def linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps, dtype=float32) by ATen's scalar formula: step = (end - start) / (steps - 1);
    index i < steps // 2 is start + step * i, the rest end - step * (steps - 1 - i)."""
    start, end = f32(start), f32(end)
    step = f32((end - start) / f32(steps - 1))
    half = steps // 2
    return np.array([start + step * f32(i) if i < half else end - step * f32(steps - 1 - i) for i in range(steps)],
                    dtype=f32)


def dynamic_map(linspace=linspace_f32) -> np.ndarray:
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i in 0..6 the midpoints of
    linspace(0.1, 1, 2^i + 1) times +-10^(i-6) (float32 products), then 0 and 1, sorted: 256 values."""
    data = []
    for i in range(7):
        bounds = linspace(0.1, 1.0, 2 ** i + 1)
        means = (bounds[:-1] + bounds[1:]) / f32(2.0)
        power = f32(10.0 ** (i - 6))
        data += list(power * means) + list(-power * means)
    data += [f32(0.0), f32(1.0)]
    assert len(data) == 256
    return np.array(sorted(data), dtype=f32)


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    return torch.linspace(start, end, steps, dtype=torch.float32).numpy()


def nearest_by_midpoints(x: np.ndarray, code: np.ndarray) -> np.ndarray:
    """torch.bucketize(x, midpoints) (right=False): the number of float32 midpoints strictly below x."""
    midpoints = (code[:-1] + code[1:]) / f32(2.0)
    return np.searchsorted(midpoints, x, side="left").astype(np.int64)


def nearest_by_distance(x: np.ndarray, code: np.ndarray) -> np.ndarray:
    """argmin |x - code| (bitsandbytes' earlier CPU path), ties to the lower index."""
    return np.argmin(np.abs(x[:, None] - code[None, :]), axis=1)


def cuda_dynamic_code(x: float, code: np.ndarray) -> int:
    """bitsandbytes' CUDA dQuantize (non-stochastic): a 7-step binary search from index 127, then the nearer
    neighbour by float32 midpoint."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = f32(-1.0), f32(1.0)
    val = code[pivot]
    step = 64
    while step > 0:
        if x > val:
            lower_pivot, lower, pivot = pivot, val, pivot + step
        else:
            upper_pivot, upper, pivot = pivot, val, pivot - step
        val = code[pivot]
        step >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > (upper + val) * f32(0.5) else pivot
    return lower_pivot if x < (lower + val) * f32(0.5) else pivot


def min_gap_to_midpoint(x: np.ndarray, code: np.ndarray) -> float:
    """How close any x comes to a rounding boundary (a float32 midpoint), relative to 1: the margin by which
    every code is unambiguous."""
    midpoints = ((code[:-1] + code[1:]) / f32(2.0)).astype(np.float64)
    return float(np.min(np.abs(x.astype(np.float64)[:, None] - midpoints[None, :])))


# ---------------------------------------------------------------------------------------------- int8

def quantize_int8(weight: np.ndarray):
    """weight (OC, C) float32 -> q (OC, C) int8, absmax (OC), scale (OC) = absmax / 127, float32."""
    absmax = np.abs(weight).max(axis=1).astype(f32)
    assert (absmax > 0).all(), "an all-zero row has no defined bitsandbytes code (127 / 0)"
    factor = (f32(127.0) / absmax).astype(f32)                       # torch: 127.0 / row_stats, float32
    scaled = (weight * factor[:, None]).astype(f32)
    q = np.rint(scaled)                                              # round half to even, as torch.round
    assert np.abs(q).max() <= 127
    scale = (absmax / f32(127.0)).astype(f32)
    return q.astype(np.int8), absmax, scale, scaled


def int8_case(seed: int) -> dict:
    """OC=5, C=70: rows of very different magnitude (10^-3 .. 10), and row 3 built so that w * 127 / absmax
    lands exactly on halves (absmax 127, factor exactly 1): round-half-to-even decides those codes."""
    OC, C = 5, 70
    g = np.random.default_rng(seed)
    weight = g.standard_normal((OC, C)).astype(f32)
    for o in range(OC):
        weight[o] *= f32(10.0 ** g.uniform(-3, 1))
    halves = g.integers(-126, 126, size=C).astype(f32) + f32(0.5)
    halves[5] = f32(127.0)
    weight[3] = halves
    q, absmax, scale, scaled = quantize_int8(weight)
    dequantized = (q.astype(f32) * scale[:, None]).astype(f32)
    bnb_dequantized = ((q.astype(f32) * absmax[:, None]).astype(f32) * f32(7.874015718698502e-3)).astype(f32)
    ties = int(np.sum(np.abs(scaled - np.trunc(scaled)) == 0.5))
    assert ties >= 60, f"row 3 should hold exact ties, found {ties}"
    # round trip: |w - q*scale| <= scale/2 plus float32 roundings of the product and of the scale
    err = np.abs(weight.astype(np.float64) - dequantized.astype(np.float64))
    assert (err <= scale.astype(np.float64)[:, None] * (0.5 + 130 * 2.0 ** -24) + 1e-45).all()
    return {
        "OC": OC, "C": C, "weight": weight.reshape(-1).tolist(), "q": q.reshape(-1).tolist(),
        "absmax": absmax.tolist(), "scale": scale.tolist(), "dequantized": dequantized.reshape(-1).tolist(),
        "dequantized_bnb": bnb_dequantized.reshape(-1).tolist(),
        "checks": {"exact_ties": ties, "dequantized_differs_from_bnb": int(np.sum(dequantized != bnb_dequantized))},
    }


# ---------------------------------------------------------------------------------------------- NF4

def quantize_nf4(w: np.ndarray, dmap: np.ndarray) -> dict:
    """w (n) float32 flattened -> the NF4 format with double-quantized absmax (see the module docstring)."""
    n = w.size
    blocks = -(-n // NF4_BLOCK)
    absmax = np.array([np.abs(w[b * NF4_BLOCK:(b + 1) * NF4_BLOCK]).max() for b in range(blocks)], dtype=f32)
    inverse = np.where(absmax > 0, f32(1.0) / np.where(absmax > 0, absmax, f32(1.0)), f32(0.0)).astype(f32)
    x = np.clip((w * np.repeat(inverse, NF4_BLOCK)[:n]).astype(f32), f32(-1.0), f32(1.0))
    codes = nearest_by_midpoints(x, NF4_CODE)
    padded = np.concatenate([codes, np.zeros(n % 2, dtype=np.int64)])
    packed = ((padded[0::2] << 4) | padded[1::2]).astype(np.uint8)

    offset = f32(math.fsum(absmax.astype(np.float64)) / blocks)      # the float32 nearest the exact mean
    centred = (absmax - offset).astype(f32)
    stat_blocks = -(-blocks // STATS_BLOCK)
    absmax2 = np.array([np.abs(centred[s * STATS_BLOCK:(s + 1) * STATS_BLOCK]).max() for s in range(stat_blocks)],
                       dtype=f32)
    inverse2 = (f32(1.0) / absmax2).astype(f32)
    y = np.clip((centred * np.repeat(inverse2, STATS_BLOCK)[:blocks]).astype(f32), f32(-1.0), f32(1.0))
    qabsmax = nearest_by_midpoints(y, dmap).astype(np.uint8)
    absmax_dq = ((dmap[qabsmax] * np.repeat(absmax2, STATS_BLOCK)[:blocks]).astype(f32) + offset).astype(f32)
    dequantized = (NF4_CODE[codes] * np.repeat(absmax_dq, NF4_BLOCK)[:n]).astype(f32)
    return {"n": n, "blocks": blocks, "absmax": absmax, "x": x, "codes": codes, "packed": packed, "offset": offset,
            "absmax2": absmax2, "y": y, "qabsmax": qabsmax, "absmax_dequantized": absmax_dq,
            "dequantized": dequantized}


def cross_check_nf4(w: np.ndarray, r: dict, dmap: np.ndarray) -> dict:
    """The same definitions computed the other ways bitsandbytes computes them; every code must agree."""
    n, blocks = r["n"], r["blocks"]
    assert (nearest_by_distance(r["x"], NF4_CODE) == r["codes"]).all(), "argmin and midpoints disagree"
    tree = np.searchsorted(NF4_CUDA_THRESHOLDS, r["x"], side="left")
    assert (tree == r["codes"]).all(), "the CUDA decision tree disagrees"
    # bitsandbytes' default backend divides the partial last block by its absmax instead of multiplying
    tail = n - n % NF4_BLOCK
    if tail < n and r["absmax"][-1] > 0:
        divided = np.clip((w[tail:] / r["absmax"][-1]).astype(f32), f32(-1), f32(1))
        assert (nearest_by_midpoints(divided, NF4_CODE) == r["codes"][tail:]).all(), "tail by division differs"
    assert (nearest_by_distance(r["y"], dmap) == r["qabsmax"]).all(), "dynamic codes: argmin disagrees"
    assert all(cuda_dynamic_code(f32(v), dmap) == q for v, q in zip(r["y"], r["qabsmax"])), "CUDA dQuantize disagrees"
    stats_tail = blocks - blocks % STATS_BLOCK
    if stats_tail < blocks:
        centred = (r["absmax"] - r["offset"]).astype(f32)
        divided = np.clip((centred[stats_tail:] / r["absmax2"][-1]).astype(f32), f32(-1), f32(1))
        assert (nearest_by_midpoints(divided, dmap) == r["qabsmax"][stats_tail:]).all(), "stats tail differs"
    torch_mean = float(torch.from_numpy(r["absmax"]).mean())
    # round trip: |x absmax - c absmax'| <= |x - c| absmax + |c| |absmax - absmax'|, |x - c| <= half the
    # widest NF4 gap
    gap = float(np.max(np.diff(NF4_CODE.astype(np.float64)))) / 2
    absmax64, absmax_dq64 = r["absmax"].astype(np.float64), r["absmax_dequantized"].astype(np.float64)
    bound = np.repeat(gap * absmax64 + np.abs(absmax_dq64 - absmax64), NF4_BLOCK)[:n] * (1 + 1e-6)
    assert (np.abs(w.astype(np.float64) - r["dequantized"].astype(np.float64)) <= bound + 1e-30).all()
    return {"min_gap_nf4_midpoint": min_gap_to_midpoint(r["x"], NF4_CODE),
            "min_gap_dynamic_midpoint": min_gap_to_midpoint(r["y"], dmap),
            "torch_float32_mean_equals_offset": torch_mean == float(r["offset"])}


def nf4_weight(n: int, seed: int, zero_block: int = -1) -> np.ndarray:
    """Gaussian weights with rows of 70 at magnitudes 10^-3 .. 10 (so block absmax values spread, and double
    quantization has real work); optionally one all-zero block (absmax 0: every code that of 0.0)."""
    g = np.random.default_rng(seed)
    w = g.standard_normal(n).astype(f32)
    for start in range(0, n, 70):
        w[start:start + 70] *= f32(10.0 ** g.uniform(-3, 1))
    if zero_block >= 0:
        w[zero_block * NF4_BLOCK:(zero_block + 1) * NF4_BLOCK] = 0
    return w


def nf4_json(r: dict, checks: dict, with_arrays: bool, w: np.ndarray) -> dict:
    out = {"n": r["n"], "blocks": r["blocks"], "offset": float(r["offset"]), "absmax2": r["absmax2"].tolist(),
           "qabsmax": r["qabsmax"].tolist(), "block_absmax": r["absmax"].tolist(),
           "absmax_dequantized": r["absmax_dequantized"].tolist(), "checks": checks}
    if with_arrays:
        out.update({"weight": w.tolist(), "codes": r["codes"].tolist(), "packed": r["packed"].tolist(),
                    "dequantized": r["dequantized"].tolist()})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures"))
    args = parser.parse_args()
    out = os.path.abspath(args.out)

    dmap = dynamic_map()
    torch_map = dynamic_map(torch_linspace)
    # A small weight (OC=5, C=70: 350 values, 5 full blocks + one of 30, one block all zero) and a large one
    # (n = 64*260 + 37, odd: 261 blocks, so 2 second-level blocks of 256 and 5, a partial block of 37, a
    # half-used last byte).
    small_w = nf4_weight(350, 21, zero_block=2)
    large_w = nf4_weight(64 * 260 + 37, 22)
    small, large = quantize_nf4(small_w, dmap), quantize_nf4(large_w, dmap)
    small_checks, large_checks = cross_check_nf4(small_w, small, dmap), cross_check_nf4(large_w, large, dmap)
    assert (small["codes"][128:192] == 7).all() and small["absmax"][2] == 0, "the zero block"
    assert large["absmax2"].size == 2 and large["n"] % 2 == 1

    ref = {
        "_comment": "Quantized-weight references from the published definitions, numpy float32 step by step "
                    "(scripts/ref_quant.py; see scripts/README.md). Floats are the float32 values as Python floats.",
        "generator": "scripts/ref_quant.py", "numpy_version": np.__version__,
        "conventions": {
            "int8": "per row: absmax = max|w|, q = round_half_even(w * fl32(127/absmax)), scale = fl32(absmax/127), "
                    "dequantized = fl32(q * scale); dequantized_bnb = fl32(fl32(q * absmax) * fl32(1/127)) as "
                    "bitsandbytes' int8_vectorwise_dequant",
            "nf4": "flattened weight, blocks of 64 (last partial), x = clamp(fl32(w * fl32(1/absmax)), -1, 1), code = "
                   "number of float32 NF4 midpoints below x, packed[i] = codes[2i] << 4 | codes[2i+1] (0 past the "
                   "end); offset = fl32(exact mean of block absmax); absmax2 per 256 blocks = max|absmax - offset|; "
                   "qabsmax = nearest dynamic_code value to fl32(fl32(absmax - offset) * fl32(1/absmax2)) by float32 "
                   "midpoints; absmax_dequantized = fl32(fl32(dynamic_code[qabsmax] * absmax2) + offset); "
                   "dequantized = fl32(nf4_code[code] * absmax_dequantized)",
            "dynamic_code": "create_dynamic_map(signed=True, 7, 8) with torch.linspace's scalar formula (ATen: "
                            "index i < steps // 2 from the start, the rest from the end); "
                            "dynamic_code_torch_linspace_differs_at lists the indices where torch 1.13's "
                            "vectorised CPU linspace on this machine gives a value 1 ulp away",
        },
        "nf4_code": NF4_CODE.tolist(),
        "dynamic_code": dmap.tolist(),
        "dynamic_code_torch_linspace_differs_at": np.nonzero(dmap != torch_map)[0].tolist(),
        "int8": int8_case(20),
        "nf4_small": nf4_json(small, small_checks, True, small_w),
        "nf4_large": {**nf4_json(large, large_checks, False, large_w),
                      "tensors": "quant-ref.safetensors: nf4_large.weight (n) F32, nf4_large.packed (ceil(n/2)) U8, "
                                 "nf4_large.dequantized (n) F32"},
    }
    with open(os.path.join(out, "quant-ref.json"), "w", encoding="utf-8") as fh:
        json.dump(ref, fh, indent=1)
        fh.write("\n")
    tensors = {"nf4_large.weight": torch.from_numpy(large_w), "nf4_large.packed": torch.from_numpy(large["packed"]),
               "nf4_large.dequantized": torch.from_numpy(large["dequantized"])}
    path = os.path.join(out, "quant-ref.safetensors")
    save_safetensors(path, tensors, {"format": "pt"})
    back = load_safetensors(path)
    assert all(torch.equal(back[k], tensors[k]) for k in tensors), "round trip"
    print(json.dumps({"int8": ref["int8"]["checks"], "nf4_small": small_checks, "nf4_large": large_checks,
                      "dynamic_code_torch_linspace_differs_at": len(ref["dynamic_code_torch_linspace_differs_at"])},
                     indent=1))


if __name__ == "__main__":
    main()
