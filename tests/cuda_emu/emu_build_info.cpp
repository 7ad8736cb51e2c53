// build_info.cu built for the CPU (emulation.h).
#include "emulation.h"
#include "../../csrc/cuda/build_info.cu"
