/**
 * addon.mpi and addon.nccl outside an MPI job, in every build (scripts/check-gyp.sh runs this against the
 * node-gyp build, which has no MPI): without MPI every call throws one line saying what to install and how to
 * rebuild; with MPI, a collective before init() throws, never crashes. NCCL in a build without CUDA says so.
 */
import { addon } from '../../lib/native';

test('an addon without MPI says how to get it; one with MPI refuses collectives before init()', () => {
  const mpi = addon.mpi;
  if (!mpi.available()) {
    const reason = mpi.unavailableReason();
    expect(reason).toBe('this gptune addon was built without MPI: install an MPI development package (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) and rebuild it with GPTUNE_MPI=ON (GPTUNE_MPI=ON npm run build:native)');
    for (const call of [() => mpi.init(), () => mpi.allreduceSum(new Float32Array(3)), () => mpi.barrier()]) expect(call).toThrow(reason);
  } else {
    expect(mpi.unavailableReason()).toBe('');
    expect(() => mpi.barrier()).toThrow(/^mpi\.barrier: MPI is not initialized; call mpi\.init\(\) first \(under mpirun or srun\)$/);
    expect(() => mpi.reduceScatterSum(new Float32Array(4), new Float32Array(2))).toThrow(/not initialized/);
    expect(() => mpi.broadcast(new Uint8Array(4), 0)).toThrow(/not initialized/);
  }
});

test('NCCL: available() and its reason agree; a build without CUDA says so', () => {
  const nccl = addon.nccl;
  expect(nccl.available()).toBe(nccl.unavailableReason() === '');
  if (!addon.cuda.compiled) expect(nccl.unavailableReason()).toMatch(/^this gptune addon was built without CUDA, so without NCCL/);
});
