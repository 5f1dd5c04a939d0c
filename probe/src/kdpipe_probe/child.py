"""The probe process of ``kdpipe-probe``: load one ONNX or OpenVINO file, measure it, print the figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kdpipe_probe import runtimes, timing


def main() -> None:
    args = json.loads(sys.argv[1])
    base, run = runtimes.load(Path(args["path"]), args["threads"])
    figures = timing.time_model(
        base, run, tuple(args["shape"]), batch_size=args["batch_size"], repeats=args["repeats"], warmup=args["warmup"]
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
