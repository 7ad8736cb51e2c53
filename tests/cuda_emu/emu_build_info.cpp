// build_info.cu built for the CPU (emulation.h).
#include "emulation.h"
#include "../../csrc/cuda/build_info.cu"

// For bindings.cpp, which does not include emulation.h: the last misaligned access's description.
std::string cnnk_emu_fault_text() { return ::cnnk_emu::fault_text(); }
