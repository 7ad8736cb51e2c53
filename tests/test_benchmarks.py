"""The benchmark suite runs end to end (a tiny filter, short timing): its correctness check passes
and it reports times and speedups for ours and PyTorch's."""
import benchmarks


def test_quick_suite_checks_and_times_both_sides():
    result = benchmarks.run(["--device", "cpu", "--quick", "--direction", "both", "--memory-format", "both",
                             "--filter", "mbv2_dw3x3s2_384_14"])
    pools = benchmarks.run(["--device", "cpu", "--quick", "--suite", "pool", "--direction", "both",
                            "--filter", "vgg_pool2x2s2_512_28"])
    cases = result["cases"] + pools["cases"]
    assert len(cases) == 8, [c["id"] for c in cases]
    for case in cases:
        assert case["status"] == "ok", case
        assert case["ours_ms"] > 0 and case["torch_ms"] > 0 and case["speedup"] > 0
