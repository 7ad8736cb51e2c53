// The pybind11 module cnnkernels._C: what is not an op (build facts, ISA control, kernel names),
// and the eager entry points cnnkernels.functional calls the ops through. Importing it also runs
// the TORCH_LIBRARY registrations linked into the same library.
#include <torch/extension.h>

#include "../cpu/kernels.h"
#include "conv2d.h"
#include "max_pool2d.h"
#include "cuda_backend.h"
#include "op_utils.h"

#ifndef CNNKERNELS_VERSION
#define CNNKERNELS_VERSION "0.0.0"
#endif

namespace cnnkernels {
namespace {

CpuIsa isa_from_string(const std::string& name) {
  CpuIsa isa;
  TORCH_CHECK_VALUE(parse_isa(name, &isa), "unknown CPU ISA '", name, "'; expected scalar, avx2 or avx512");
  return isa;
}

DType dtype_from_string(const std::string& name) {
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::f16})
    if (name == dtype_name(d)) return d;
  TORCH_CHECK_VALUE(false, "unknown dtype '", name, "'; expected f32, f64, bf16 or f16");
}

// The eager entry points: each calls its op through the dispatcher, as torch.ops.cnnkernels.<op>
// does, so autograd, autocast, dispatch modes, vmap, the profiler and tracing see the same op,
// but without torch.ops' Python layer (argument parsing against the schema, a boxed call):
// on this VM a call right after a layer that streamed megabytes (the caches cold, as in a
// network) cost 51 us through torch.ops and 26 us here, 7 us and 2.5 us with the caches warm.
// The GIL is released around the op, as torch.ops does. cnnkernels.functional takes torch.ops
// where these would miss something: under torch.compile / export tracing and with
// __torch_function__ overrides (subclasses, modes), which torch.ops honours and pybind does not.
void def_eager_calls(pybind11::module_& m) {
  namespace py = pybind11;
  using Ints = std::vector<int64_t>;
  m.def("conv2d", [](const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     const Ints& stride, const Ints& padding, const Ints& dilation, int64_t groups) {
    static const auto op = find_op<decltype(conv2d)>("cnnkernels::conv2d");
    return op.call(input, weight, bias, stride, padding, dilation, groups);
  }, py::call_guard<py::gil_scoped_release>(), "torch.ops.cnnkernels.conv2d without torch.ops' Python layer");
  m.def("max_pool2d", [](const at::Tensor& input, const Ints& kernel_size, const Ints& stride, const Ints& padding,
                         const Ints& dilation, bool ceil_mode) {
    static const auto op = find_op<decltype(max_pool2d)>("cnnkernels::max_pool2d");
    return op.call(input, kernel_size, stride, padding, dilation, ceil_mode);
  }, py::call_guard<py::gil_scoped_release>(), "torch.ops.cnnkernels.max_pool2d without torch.ops' Python layer");
  m.def("max_pool2d_with_indices", [](const at::Tensor& input, const Ints& kernel_size, const Ints& stride,
                                      const Ints& padding, const Ints& dilation, bool ceil_mode) {
    static const auto op = find_op<decltype(max_pool2d_with_indices)>("cnnkernels::max_pool2d_with_indices");
    return op.call(input, kernel_size, stride, padding, dilation, ceil_mode);
  }, py::call_guard<py::gil_scoped_release>(),
        "torch.ops.cnnkernels.max_pool2d_with_indices without torch.ops' Python layer");
}

}  // namespace
}  // namespace cnnkernels

PYBIND11_MODULE(_C, m) {
  using namespace cnnkernels;
  m.doc() = "cnnkernels compiled core: ops are under torch.ops.cnnkernels";
  m.attr("__version__") = CNNKERNELS_VERSION;
  m.attr("torch_version") = TORCH_VERSION;
  m.def("cuda_built", &cuda_kernels_built, "whether CUDA kernels were compiled in");
  m.def("cuda_architectures", [] {
#ifdef CNNKERNELS_WITH_CUDA
    return cuda_backend::compiled_architectures();
#else
    return std::string();
#endif
  }, "the compute capabilities the CUDA kernels were compiled for, e.g. '80,90'");
#ifdef CNNKERNELS_WITH_CUDA
  m.def("set_cuda_reference_kernels", &cuda_backend::set_reference_kernels_only,
        "run the any-strides CUDA reference kernels for everything (True) or the fast ones (False)");
  m.def("cuda_reference_kernels", &cuda_backend::reference_kernels_only);
  m.def("set_cuda_gemm_tiles", [](const std::string& tiles) {
    const int code = tiles == "auto" ? 0 : tiles == "small" ? 1 : tiles == "large" ? 2 : -1;
    TORCH_CHECK(code >= 0, "set_cuda_gemm_tiles: tiles must be 'auto', 'small' or 'large', got '", tiles, "'");
    cuda_backend::set_gemm_tiles(code);
  }, "the tensor-core GEMM pipeline's block tiles: 'auto' (per layer), 'small' (64 x 64) or 'large' (128 x 128)");
#endif
  m.def("host_isas", [] {
    std::vector<std::string> out;
    for (CpuIsa isa : {CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avx512})
      if (host_supports(isa)) out.push_back(isa_name(isa));
    return out;
  }, "the CPU ISAs this host can run");
  m.def("host_has_avx512_bf16", &host_has_avx512_bf16);
  m.def("cpu_isa", [] { return std::string(isa_name(active_cpu_isa())); }, "the ISA the CPU kernels use now");
  m.def("set_cpu_isa", [](const std::string& name) {
    const CpuIsa wanted = isa_from_string(name);
    TORCH_CHECK(host_supports(wanted), "this CPU cannot run ", name, " kernels");
    set_active_cpu_isa(wanted);
  }, "force the CPU kernels' ISA (scalar, avx2 or avx512) for this process");
  m.def("bf16_dot", [] { return std::string(bf16_dot_name(bf16_dot_mode())); },
        "which engine the AVX-512 bfloat16 convolutions run where the host has AVX512-BF16: auto, on, off or amx");
  m.def("set_bf16_dot", [](const std::string& mode) {
    Bf16Dot m;
    TORCH_CHECK_VALUE(parse_bf16_dot(mode, &m), "set_bf16_dot: mode must be 'auto', 'on', 'off' or 'amx', got '",
                      mode, "'");
    set_bf16_dot_mode(m);
  }, "auto: AMX tiles where the host has AMX-BF16 and the layer suits them, and vdpbf16ps where it measures at "
     "least as fast as FMAs, else the float engine except on layers of few pixels; on: always vdpbf16ps; off: "
     "always the float engine; amx: AMX tiles where they apply, vdpbf16ps for the rest (CNNKERNELS_BF16_DOT sets "
     "the initial mode)");
  m.def("host_can_run_amx_bf16", &host_can_run_amx_bf16,
        "whether this process can run AMX-BF16 tiles (CPUID and the OS's permission)");
  m.def("bf16_dot_rate_ratio", &bf16_dot_rate_ratio,
        "vdpbf16ps multiply-adds per second over FMA multiply-adds per second, measured once (0: no AVX512-BF16)");
  m.def("zmm_fma_rate_ratio", &zmm_fma_rate_ratio,
        "512-bit over 256-bit FMA multiply-adds per second, measured once (0: no AVX-512)");
  m.def("set_poison_outputs", &set_poison_outputs,
        "tests: fill every op output with NaN (int64: INT64_MIN) before the kernel writes it, and every "
        "CPU kernel scratch block with NaN bytes");
  def_eager_calls(m);
  m.def("cpu_kernel_name", [](const std::string& op, const std::string& dtype) {
    return cpu_kernel_name(op, dtype_from_string(dtype));
  }, "the name of the CPU kernel that runs (op, dtype) with the active ISA");
}
