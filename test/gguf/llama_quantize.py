"""Quantizes a GGUF file with llama.cpp's own llama_model_quantize (the llama-quantize tool's core, in
node-llama-cpp 3.21.1's shipped libllama), through ctypes: an independent maker of Q8_0 / Q4_K_M
files for gptune's tests. Usage: python3 llama_quantize.py IN.gguf OUT.gguf FTYPE (llama.h
llama_ftype: 7 = Q8_0, 15 = Q4_K_M). Exits non-zero with llama.cpp's status on failure."""
import ctypes
import os
import sys

BINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64')


class QuantizeParams(ctypes.Structure):
    # llama.h struct llama_model_quantize_params (v0.4.0), field for field.
    _fields_ = [
        ('nthread', ctypes.c_int32), ('ftype', ctypes.c_int), ('output_tensor_type', ctypes.c_int),
        ('token_embedding_type', ctypes.c_int), ('allow_requantize', ctypes.c_bool), ('quantize_output_tensor', ctypes.c_bool),
        ('only_copy', ctypes.c_bool), ('pure', ctypes.c_bool), ('keep_split', ctypes.c_bool), ('dry_run', ctypes.c_bool),
        ('imatrix', ctypes.c_void_p), ('kv_overrides', ctypes.c_void_p), ('tt_overrides', ctypes.c_void_p),
        ('prune_layers', ctypes.c_void_p), ('max_buf_size', ctypes.c_size_t),
    ]


def main():
    src, dst, ftype = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctypes.CDLL(os.path.join(BINS, 'libggml-base.so'), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(os.path.join(BINS, 'libggml.v0.4.0.so'), mode=ctypes.RTLD_GLOBAL)
    llama = ctypes.CDLL(os.path.join(BINS, 'libllama.v0.4.0.so'))
    llama.llama_model_quantize_default_params.restype = QuantizeParams
    llama.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    llama.llama_model_quantize.restype = ctypes.c_uint32
    params = llama.llama_model_quantize_default_params()
    params.nthread = 1
    params.ftype = ftype
    status = llama.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if status != 0:
        sys.stderr.write(f'llama_model_quantize {src} -> {dst} (ftype {ftype}) failed with status {status}\n')
        sys.exit(1)


main()
