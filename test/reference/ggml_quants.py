"""ggml's own quantizers and dequantizers, called in libggml-base.so (the build node-llama-cpp ships) through
ctypes: the independent reference of test/kernels/ggml_blocks.test.ts. Nothing here reimplements a format.

    python3 test/reference/ggml_quants.py LIBGGML_BASE < requests > replies

A batch of requests (one process for a whole test file: starting python costs more than the work), each
little-endian: op (u8), ggml type id (u8), count (u32: values, a whole number of blocks), input size (u32),
input. Each reply: size (u32), bytes.
  op 0, quantize:   input count float32 values; reply quantize_row_<type>_ref's blocks, followed by
                    dequantize_row_<type>'s count float32 values of those blocks.
  op 1, dequantize: input the blocks of count values; reply dequantize_row_<type>'s count float32 values.
ggml's row functions take any whole number of blocks, so rows back to back are one call.
"""
import ctypes
import struct
import sys

NAMES = {2: 'q4_0', 6: 'q5_0', 8: 'q8_0', 12: 'q4_K', 13: 'q5_K', 14: 'q6_K'}


def main() -> None:
    lib = ctypes.CDLL(sys.argv[1])
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]

    def function(prefix: str, name: str, suffix: str):
        fn = getattr(lib, f'{prefix}{name}{suffix}')
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        return fn

    def dequantize(type_id: int, blocks: bytes, count: int) -> bytes:
        src = ctypes.create_string_buffer(blocks, len(blocks))
        dst = ctypes.create_string_buffer(4 * count)
        function('dequantize_row_', NAMES[type_id], '')(src, dst, count)
        return dst.raw

    data = sys.stdin.buffer.read()
    at = 0
    out = []
    while at < len(data):
        op, type_id, count, size = struct.unpack_from('<BBII', data, at)
        at += struct.calcsize('<BBII')
        payload = data[at:at + size]
        at += size
        if op == 0:
            nbytes = lib.ggml_row_size(type_id, count)
            src = ctypes.create_string_buffer(payload, size)
            dst = ctypes.create_string_buffer(nbytes)
            function('quantize_row_', NAMES[type_id], '_ref')(src, dst, count)
            reply = dst.raw[:nbytes] + dequantize(type_id, dst.raw[:nbytes], count)
        elif op == 1:
            reply = dequantize(type_id, payload, count)
        else:
            raise SystemExit(f'unknown op {op}')
        out.append(struct.pack('<I', len(reply)))
        out.append(reply)
    sys.stdout.buffer.write(b''.join(out))


if __name__ == '__main__':
    main()
