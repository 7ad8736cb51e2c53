"""Train a small CNN built from cnnkernels layers on scikit-learn's digits (8x8 handwritten digits,
shipped inside scikit-learn: no download), next to the same network built from torch.nn layers.

    python examples/digits_cnn.py            # both versions, 15 epochs, prints test accuracy

Both networks start from the same weights (same seed: cnnkernels.nn modules initialise exactly as
torch.nn's) and see the same batches, so their losses should agree to float32 rounding and both
should pass 97% test accuracy.
"""
import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import cnnkernels


def load_data(seed=0):
    """Digits as float32 images (N, 1, 8, 8) scaled to [0, 1], split 80 / 20, stratified."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    i_train, i_test = train_test_split(range(len(y)), test_size=0.2, random_state=seed, stratify=y.numpy())
    return (x[i_train], y[i_train]), (x[i_test], y[i_test])


def make_model(layers, seed=0):
    """layers: cnnkernels.nn or torch.nn (both provide Conv2d and MaxPool2d)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        layers.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
        layers.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
        layers.MaxPool2d(2),                                   # 8x8 -> 4x4
        layers.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
        layers.MaxPool2d(2),                                   # 4x4 -> 2x2
        torch.nn.Flatten(), torch.nn.Linear(64 * 2 * 2, 10),
    )


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def train(layers, epochs=15, batch_size=32, lr=2e-3, seed=0, log=print):
    """Train on the digits; returns dict(losses per epoch, test_accuracy, seconds)."""
    (x_train, y_train), (x_test, y_test) = load_data(seed)
    model = make_model(layers, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(y_train) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # settles at the end: a stable final accuracy
    order = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        perm, total = torch.randperm(len(y_train), generator=order), 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(idx)
        losses.append(total / len(perm))
        log(f"  {layers.__name__:15s} epoch {epoch + 1:2d}  loss {losses[-1]:.4f}  "
            f"test accuracy {accuracy(model, x_test, y_test):.4f}")
    return dict(losses=losses, test_accuracy=accuracy(model, x_test, y_test), seconds=time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args(argv)
    results = {}
    for layers in (cnnkernels.nn, torch.nn):
        print(f"{layers.__name__}:")
        results[layers.__name__] = train(layers, epochs=args.epochs)
    for name, r in results.items():
        print(f"{name:15s} test accuracy {r['test_accuracy']:.4f}  final loss {r['losses'][-1]:.4f}  "
              f"({r['seconds']:.1f} s)")
    return results


if __name__ == "__main__":
    main()
