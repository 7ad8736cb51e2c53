"""The examples run and do what they claim: the digits CNN of cnnkernels layers reaches 97% test
accuracy like its torch.nn twin, and a converted resnet18 trains like the original."""
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


def test_digits_cnn_reaches_97_percent_like_torch(capsys):
    import digits_cnn
    results = digits_cnn.main([])
    ours, ref = results["cnnkernels.nn"], results["torch.nn"]
    assert ours["test_accuracy"] >= 0.97 and ref["test_accuracy"] >= 0.97
    assert abs(ours["test_accuracy"] - ref["test_accuracy"]) <= 0.01
    # same weights, same batches: the first epoch's mean loss agrees closely
    assert abs(ours["losses"][0] - ref["losses"][0]) <= 1e-3 * ref["losses"][0]
    assert "test accuracy" in capsys.readouterr().out


def test_resnet18_converted_trains_like_the_original():
    pytest.importorskip("torchvision")
    import resnet18_convert
    losses = resnet18_convert.main(["--steps", "12", "--batch", "16"])
    ours, ref = losses["cnnkernels"], losses["torch"]
    assert abs(ours[0] - ref[0]) <= 1e-5 * ref[0] and abs(ours[1] - ref[1]) <= 1e-3 * ref[1]
    assert sum(ours[-4:]) / 4 < 0.6 * ours[0], ours  # it learns
