/**
 * Rotary position embedding tables, as Hugging Face's rope initialisation functions define them
 * (transformers/modeling_rope_utils.py: default, linear, llama3), computed in float64 and rounded
 * once to float32. The rope kernels read cos/sin as (positions, HS/2): channel i and i + HS/2 of a
 * head share angle p * inv_freq[i] (the rotate-half layout).
 */
import type { DecoderConfig } from './decoder_config';

/** inv_freq (HS/2) in float64: theta^(-2i/HS), then the scaling rule of rope_scaling. */
export function ropeInverseFrequencies(cfg: Pick<DecoderConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
  const s = cfg.ropeScaling;
  if (s === null) return inv;
  if (s.rope_type === 'linear') {
    // Positions divided by the factor: the same as every frequency divided by it.
    for (let i = 0; i < half; i++) inv[i] /= s.factor;
    return inv;
  }
  // llama3: wavelengths longer than original_max / low_freq_factor are slowed by the factor, those
  // shorter than original_max / high_freq_factor are kept, and the band between is interpolated.
  const lowFreqWavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const highFreqWavelen = s.original_max_position_embeddings / s.high_freq_factor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowFreqWavelen) {
      inv[i] /= s.factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
    }
  }
  return inv;
}

/** cos and sin tables (positions, HS/2), float32, for positions [0, positions). */
export function ropeTables(cfg: Pick<DecoderConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>, positions: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInverseFrequencies(cfg);
  const half = inv.length;
  const cos = new Float32Array(positions * half), sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * inv[i];
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
