// conv2d_gemm.cu built for the CPU (emulation.h).
#include "emulation.h"
#include "../../csrc/cuda/conv2d_gemm.cu"
