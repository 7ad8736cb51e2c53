"""Convert torchvision's resnet18 with cnnkernels.convert() and train it a few steps, side by side
with the unconverted model from the same weights.

    python examples/resnet18_convert.py                       # 20 SGD steps, batch 32, 32x32 digits
    python examples/resnet18_convert.py --channels-last --steps 50

The data are scikit-learn's digits upscaled to 32x32 and repeated over 3 channels (no download).
convert(model, copy=True) leaves the original model untouched, so both train from the same
weights on the same batches. The first steps agree to float32 rounding; after that the two runs
drift apart, as any two float32 implementations do (batch norm over batches of 32 at 1x1 spatial
size amplifies rounding: torch's own NCHW and channels_last runs drift the same way), while both
losses fall.
"""
import argparse
import time

import torch
import torchvision
from sklearn.datasets import load_digits

import cnnkernels


def digits_as_images(size=32):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous(), torch.tensor(digits.target)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args(argv)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10).to(memory_format=memory_format)
    converted = cnnkernels.convert(original, copy=True)
    n_conv = sum(type(m) is cnnkernels.nn.Conv2d for m in converted.modules())
    n_pool = sum(type(m) is cnnkernels.nn.MaxPool2d for m in converted.modules())
    print(f"converted resnet18: {n_conv} Conv2d and {n_pool} MaxPool2d now run cnnkernels' kernels")

    x_all, y_all = digits_as_images()
    batches = torch.randint(len(y_all), (args.steps, args.batch), generator=torch.Generator().manual_seed(0))
    models = {"cnnkernels": converted, "torch": original}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    losses = {k: [] for k in models}
    seconds = dict.fromkeys(models, 0.0)
    print(f"{'step':>4}  {'loss (cnnkernels)':>17}  {'loss (torch)':>12}")
    for step, idx in enumerate(batches):
        x, y = x_all[idx].contiguous(memory_format=memory_format), y_all[idx]
        for name, model in models.items():
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            seconds[name] += time.perf_counter() - t0
            losses[name].append(loss.item())
        print(f"{step + 1:4d}  {losses['cnnkernels'][-1]:17.5f}  {losses['torch'][-1]:12.5f}")
    print(f"time per training step: cnnkernels {1e3 * seconds['cnnkernels'] / args.steps:.1f} ms, "
          f"torch {1e3 * seconds['torch'] / args.steps:.1f} ms")
    return losses


if __name__ == "__main__":
    main()
