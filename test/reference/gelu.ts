/**
 * Float64 reference of GPT-2's tanh-approximated GELU:
 * gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
 */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const CUBIC = 0.044715;

/**
 * 0.5 (1 + tanh(u)). For u < 0 it uses the equal form e^{2u} / (1 + e^{2u}), because 1 + tanh(u)
 * cancels even in float64 below x = -7 (gelu < 1e-15), where the float32 kernels still have digits.
 */
function halfOnePlusTanh(u: number): number {
  if (u >= 0) return 0.5 * (1 + Math.tanh(u));
  const e = Math.exp(2 * u);
  return e / (1 + e);
}

export function gelu(x: number): number {
  return x * halfOnePlusTanh(SQRT_2_OVER_PI * (x + CUBIC * x ** 3));
}

/** d gelu / dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx. */
export function geluGrad(x: number): number {
  const u = SQRT_2_OVER_PI * (x + CUBIC * x ** 3);
  const t = Math.tanh(u);
  return halfOnePlusTanh(u) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * CUBIC * x * x);
}
