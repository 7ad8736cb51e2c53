"""The benchmark suite runs end to end (tiny filters, short timing): its correctness check passes,
it reports times and speedups for ours and PyTorch's, writes JSON and a PNG, and re-reports saved
results."""
import json

import pytest
import torch

import benchmarks
import cnnkernels


def test_quick_suite_checks_and_times_both_sides():
    result = benchmarks.run(["--device", "cpu", "--quick", "--direction", "both", "--memory-format", "both",
                             "--filter", "mbv2_dw3x3s2_384_14", "--no-progress"])
    pools = benchmarks.run(["--device", "cpu", "--quick", "--suite", "pool", "--direction", "both",
                            "--filter", "vgg_pool2x2s2_512_28"])
    cases = result["cases"] + pools["cases"]
    assert len(cases) == 8, [c["id"] for c in cases]
    for case in cases:
        assert case["status"] == "ok", case
        assert case["ours_ms"] > 0 and case["torch_ms"] > 0 and case["speedup"] > 0


def test_models_suite_json_plot_and_replay(tmp_path, capsys):
    pytest.importorskip("torchvision")
    pytest.importorskip("matplotlib")
    out = tmp_path / "models.json"
    result = benchmarks.run(["--device", "cpu", "--quick", "--suite", "models", "--filter", "resnet18/nhwc",
                             "--out", str(out)])
    assert [c["id"] for c in result["cases"]] == ["resnet18/nhwc/fwd", "resnet18/nhwc/fwdbwd"]
    for case in result["cases"]:
        assert case["status"] == "ok", case
        assert case["flops"] > 3e9 and case["speedup"] > 0  # resnet18 at 224x224: 3.6 GFLOP forward
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "a PNG is written next to the JSON"
    saved = json.loads(out.read_text())
    assert [c["id"] for c in saved["cases"]] == [c["id"] for c in result["cases"]]

    capsys.readouterr()
    replay = benchmarks.run(["--from-json", str(out), "--markdown", "--plot", str(tmp_path / "again.png")])
    text = capsys.readouterr().out
    assert "resnet18" in text and "| resnet18 model |" in text
    assert replay["summary"] == result["summary"] and (tmp_path / "again.png").exists()


def test_versus_isa_times_a_third_side_and_summarises_the_ratio(capsys):
    # scalar runs on every host: our kernels forced to it race the default ISA in the same rounds.
    isa_before = cnnkernels._C.cpu_isa()
    result = benchmarks.run(["--device", "cpu", "--quick", "--suite", "pool", "--direction", "fwd",
                             "--memory-format", "nhwc", "--filter", "vgg_pool2x2s2_512_28", "--versus-isa", "scalar"])
    (case,) = result["cases"]
    assert case["status"] == "ok" and case["versus_isa"] == "scalar", case
    assert case["ours_scalar_ms"] > 0 and case["isa_ratio"] == case["ours_scalar_ms"] / case["ours_ms"]
    assert result["isa_summary"]["vgg16 max_pool2d"]["nhwc fwd"] == pytest.approx(case["isa_ratio"])  # a geomean of one
    assert "scalar/ours" in capsys.readouterr().out
    assert cnnkernels._C.cpu_isa() == isa_before, "the suite restores the ISA"


def test_model_check_falls_back_to_float64_calibration():
    """A model case whose result is far from torch's passes only where torch is as far from the
    float64 result (an ill-conditioned training step), not where ours alone is off."""
    from benchmarks.suite import CALIBRATED_FACTOR, _check_calibrated

    exact = {"out": torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)}
    torch_off = {"out": torch.tensor([1.5, -2.0, 4.0])}  # torch: 12.5% of the scale off
    ours_other_way = {"out": torch.tensor([0.5, -2.0, 4.0])}  # as far off, the other way: 25% from torch
    ok, errors = _check_calibrated(ours_other_way, torch_off, exact, tol=0.01)
    assert ok and errors["out"]["ours"] == pytest.approx(0.125) and errors["out"]["torch"] == pytest.approx(0.125)
    ours_wrong = {"out": torch.tensor([1.0, -2.0, 4.0 + 4 * CALIBRATED_FACTOR * 0.125 + 0.1])}
    ok, errors = _check_calibrated(ours_wrong, torch_off, exact, tol=0.01)
    assert not ok, errors
