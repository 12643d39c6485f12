/** gptune info */
import { addon } from '../../native';
import { VERSION } from '../../version';
import { COMMON, Command, out } from '../common';

export const info: Command = {
  usage: 'gptune info [--json]',
  description: 'Version, compiled backends, SIMD level and threads, and the GPUs found.',
  flags: { json: { type: 'bool', help: 'print one JSON object' }, threads: COMMON.threads, help: COMMON.help },
  run(v) {
    const cuda = addon.cuda;
    const count = cuda.compiled && cuda.deviceCount ? cuda.deviceCount() : 0;
    const gpus = count > 0 && cuda.devices ? cuda.devices() : [];
    const report = {
      version: VERSION,
      addon_version: addon.version,
      backends: addon.backends,
      simd: addon.simdLevel(),
      threads: addon.numThreads(),
      gpus,
      cuda: cuda.compiled ? (count > 0 ? 'available' : `compiled; unavailable: ${cuda.unavailableReason?.() ?? 'no device'}`) : 'not compiled',
      // Which bf16 matmul path the GPU would use, and whether cuBLASLt (dlopen'ed) is there.
      cuda_matmul: count > 0 && cuda.matmulBackend ? cuda.matmulBackend() : null,
      node: process.version,
    };
    if (v.json) return out(JSON.stringify(report));
    out(`gptune ${report.version}`);
    out(`backends: ${report.backends.join(', ')}`);
    out(`cpu: ${report.simd}, ${report.threads} threads`);
    out(`cuda: ${report.cuda}`);
    if (report.cuda_matmul) out(`cuda matmul: ${JSON.stringify(report.cuda_matmul)}`);
    for (const g of gpus) out(`  gpu ${g.index}: ${g.name}, ${(g.totalMemory / 2 ** 30).toFixed(1)} GiB, compute ${g.computeCapability}`);
  },
};
