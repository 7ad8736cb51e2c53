"""DistributedDataParallel over our layers: two processes on the gloo backend (CPU), each with half
of every batch, get the gradients (and, after training, the weights) of one process on the whole
batch."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import cnnkernels

STEPS, BATCH = 3, 8


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        cnnkernels.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        cnnkernels.nn.MaxPool2d(2),
        cnnkernels.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, padding_mode="reflect"), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5),
    )


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 16, 16, generator=g), torch.randint(5, (BATCH,), generator=g))
            for _ in range(STEPS)]


def train(model, data, rank=0, world=1):
    """SGD steps on this rank's share of each batch; the gradients of every step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    grads = []
    for x, y in data:
        share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        loss = torch.nn.functional.cross_entropy(model(x[share]), y[share])
        opt.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        opt.step()
    return grads


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        grads = train(model, batches(), rank, world)
        torch.save(dict(grads=grads, params=[p.detach() for p in model.module.parameters()]),
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
def test_ddp_two_processes_match_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = make_model()
    grads = train(single, batches())
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for res in results:  # DDP averages the two halves' gradients: the whole batch's mean loss
        for step, (g_ddp, g_one) in enumerate(zip(res["grads"], grads)):
            for a, b in zip(g_ddp, g_one):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"step {step}")
        for a, b in zip(res["params"], single.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(results[0]["params"], make_model().parameters())), \
        "the model must have trained"
