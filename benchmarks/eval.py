"""What the memory format and BatchNorm folding buy on CPU, against the plain layout, in one process.

For the student and the teacher of params.yaml it times, on the same random batches of the data's
image shape (speed does not depend on the pixel values):

- evaluation (no grad, eval mode) at two batch sizes: the model as trained in NCHW (the baseline,
  at the old ``runtime.eval_batch_size`` of 1000), in channels_last, and channels_last with every
  BatchNorm folded into its convolution (:func:`kdpipe.models.folding.inference_copy`, what
  ``kdpipe.evaluation.metrics.predict_logits`` runs);
- the student's train step (forward, cross-entropy, backward, SGD step) in NCHW and channels_last.

Rounds interleave every measurement in an order that rotates from round to round; each figure is the
median over rounds of its ratio to the baseline measured in the same round, so load from another
process shifts both sides alike (the baseline of the train steps is the NCHW train step). It prints one
line per measurement:

    <model> <what> images_per_s=<x> ratio=<x / baseline>

    .venv/bin/python benchmarks/eval.py [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kdpipe.config import DEFAULT_PARAMS, load_params
from kdpipe.models import FeatureClassifier, create_model
from kdpipe.models.folding import inference_copy

SHAPE, CLASSES = (1, 28, 28), 10  # Fashion-MNIST
CL = torch.channels_last
Timed = Callable[[], int]


def evaluation(model: torch.nn.Module, batch: torch.Tensor, batches: int) -> Timed:
    def run() -> int:
        with torch.no_grad():
            for _ in range(batches):
                model(batch)
        return batches * len(batch)

    return run


def train_step(model: FeatureClassifier, batch: torch.Tensor, batches: int) -> Timed:
    labels = torch.randint(0, CLASSES, (len(batch),), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run() -> int:
        model.train()
        for _ in range(batches):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(batch), labels).backward()
            optimizer.step()
        return batches * len(batch)

    return run


def measurements(arch: str, images: int, train_batch: int, with_train: bool) -> dict[str, Timed]:
    """Every measurement of one model; the first evaluation and the first train step are the baselines."""
    torch.manual_seed(0)
    plain = create_model(arch, CLASSES, SHAPE[0]).eval()
    channels_last = copy.deepcopy(plain).to(memory_format=CL)
    folded = inference_copy(channels_last)
    out: dict[str, Timed] = {}
    for size in (1000, 256):
        x = torch.randn(size, *SHAPE)
        out[f"eval nchw batch{size}"] = evaluation(plain, x, max(1, images // size))
        out[f"eval channels_last batch{size}"] = evaluation(
            channels_last, x.contiguous(memory_format=CL), max(1, images // size)
        )
        out[f"eval channels_last+folded batch{size}"] = evaluation(
            folded, x.contiguous(memory_format=CL), max(1, images // size)
        )
    if with_train:
        x = torch.randn(train_batch, *SHAPE)
        steps = max(1, images // (4 * train_batch))
        out[f"train nchw batch{train_batch}"] = train_step(copy.deepcopy(plain), x, steps)
        out[f"train channels_last batch{train_batch}"] = train_step(
            copy.deepcopy(channels_last), x.contiguous(memory_format=CL), steps
        )
    return out


def timed(run: Timed) -> float:
    start = time.perf_counter()
    seen = run()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--params", default=str(DEFAULT_PARAMS), help="params file: student, teacher, batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a study worker's)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up round (default 5)")
    parser.add_argument("--images", type=int, default=4000, help="images per evaluation measurement (default 4000)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    print(
        f"torch {torch.__version__}; {torch.get_num_threads()} thread(s); input {SHAPE}; "
        f"{args.rounds} rounds after a warm-up, order rotating; "
        "ratio: median per-round ratio to the first line of its kind"
    )
    for arch, with_train in ((params.student.arch, True), (params.teacher.arch, False)):
        runs = measurements(arch, args.images, params.train.batch_size, with_train)
        names = list(runs)
        for name in names:
            timed(runs[name])
        rates: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rates[name].append(timed(runs[name]))
        for name in names:
            base = rates[next(n for n in names if n.split()[0] == name.split()[0])]
            ratio = statistics.median(a / b for a, b in zip(rates[name], base, strict=True))
            print(f"{arch} {name} images_per_s={statistics.median(rates[name]):.0f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
