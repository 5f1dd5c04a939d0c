"""Train a small student through the in-memory path and print the data's and the student's sha256 as JSON.

Run by tests/test_streamed_data.py in a fresh process with one thread (``OMP_NUM_THREADS=1``, as oneDNN picks
other kernels otherwise), and run the same way at kdpipe 8b0019e, before the prepared store existed, to measure
``expected.json``. It uses only what both versions have, and spells out the student's optimiser and srd's
weights at 8b0019e's defaults (``RECORDED_WITH``), so that a later change of a default leaves it measuring the
same thing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image

from kdpipe import steps
from kdpipe.config import params_from_dict
from kdpipe.data.sources import load_mnist_like
from kdpipe.models.file import MODEL_FILE, load_model

PER_CLASS = 30
RECORDED_WITH = {
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.1, "weight_decay": 0.0005},
    "method": {"srd": {"feat_weight": 2.0, "kl_weight": 0.9, "ce_weight": 0.1, "temperature": 1.0, "alpha": 4.0}},
}


def main(out: Path) -> dict[str, str]:
    raw = load_mnist_like("fashion_mnist", out / "raw")
    counts: dict[int, int] = defaultdict(int)
    for image, label in zip(raw.train_x[:1000], raw.train_y[:1000].tolist(), strict=True):
        if counts[label] >= PER_CLASS:
            continue
        counts[label] += 1
        folder = out / "set" / raw.classes[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{counts[label]}.png")
    paths = ("prepared", "teacher", "student", "checkpoints", "validation", "promotion", "teacher_cache")
    params = params_from_dict(
        {
            "data": {"source": "imagefolder", "root": str(out / "set"), "image_size": 32},
            "teacher": {"arch": "cnn8", "train": {"epochs": 1, "batch_size": 32}},
            "student": {"arch": "cnn8"},
            **RECORDED_WITH,
            "runtime": {"num_threads": 1, "progress": "off", "device": "cpu"},
            "tracking": {"enabled": False},
            "paths": {k: str(out / k) for k in paths},
        }
    )
    manifest = steps.prepare_data(params)
    steps.evaluate_teacher(params)
    steps.distill(params)
    state = load_model(Path(params.paths.student) / MODEL_FILE)[0].state_dict()
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].cpu().contiguous().numpy().tobytes())
    return {"data_sha256": manifest["sha256"], "student_sha256": digest.hexdigest()}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
