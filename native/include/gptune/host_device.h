// GPTUNE_HOST_DEVICE marks a function that both backends compile: a __host__ __device__ function
// under nvcc, a plain one for the C++ compiler. The headers that define a format once for every
// backend (quant_format.h, dropout_mask.h) use it.
#pragma once

#if defined(__CUDACC__)
#define GPTUNE_HOST_DEVICE __host__ __device__
#else
#define GPTUNE_HOST_DEVICE
#endif
