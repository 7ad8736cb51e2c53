// conv2d.cu built for the CPU (emulation.h).
#include "emulation.h"
#include "../../csrc/cuda/conv2d.cu"
