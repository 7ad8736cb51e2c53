// max_pool2d.cu built for the CPU (emulation.h).
#include "emulation.h"
#include "../../csrc/cuda/max_pool2d.cu"
