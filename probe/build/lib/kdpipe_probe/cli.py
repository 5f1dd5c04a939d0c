"""``kdpipe-probe FILE``: an exported student's cost (and top-1) on this machine, as one JSON result.

Latency is the median of ``--probes`` fresh processes (:func:`kdpipe_probe.settle.settle`, with no limit), each
timing ``--repeats`` batch-1 calls after ``--warmup``; memory, throughput and size as kdpipe's validate measures
them. The result names the file (sha256), the device, the runtime and the registered version the file belongs to
(from its metadata), so that ``kdpipe registry attach-probe`` can put it beside that version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdpipe_probe import __version__, accuracy, runtimes
from kdpipe_probe.process import ProbeProcessError, fresh
from kdpipe_probe.settle import settle


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_file(
    path: Path,
    *,
    images: Path | None = None,
    threads: int = 1,
    repeats: int = 200,
    warmup: int = 20,
    batch_size: int = 64,
    probes: int = 3,
    device: str | None = None,
) -> dict[str, Any]:
    """The JSON result for the ONNX file or OpenVINO IR at ``path`` (see the module docstring)."""
    if not path.is_file():
        raise runtimes.ProbeError(f"{path}: no such file")
    props = runtimes.metadata(path)
    fmt, shape = runtimes.format_of(path, props), runtimes.input_shape(path, props)
    args = {"path": str(path), "threads": threads, "shape": list(shape), "batch_size": batch_size}
    args |= {"repeats": repeats, "warmup": warmup}

    def one() -> dict[str, float]:
        try:
            return fresh("kdpipe_probe.child", args, threads)
        except ProbeProcessError as exc:
            raise runtimes.ProbeError(f"{path}: the probe process failed ({exc})") from None

    figures = settle(one, probes, None)
    parts = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    figures["size_kb"] = sum(p.stat().st_size for p in parts) / 1024
    scored = None
    if images is not None:
        scored = accuracy.top1(runtimes.load(path, threads)[1], props, shape, images, batch_size)
    return {
        "kdpipe_probe": __version__,
        "file": path.name,
        "sha256": _sha256(path),
        "format": fmt,
        "runtime": runtimes.runtime_version(fmt),
        "device": {
            "name": device or socket.gethostname(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "threads": threads,
        "batch_size": batch_size,
        "figures": figures,
        "accuracy": scored,
        "metadata": runtimes.describe(props),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def post(result: dict[str, Any], url: str) -> int:
    """POST the result as JSON to ``url``; returns the HTTP status."""
    request = urllib.request.Request(
        url, data=json.dumps(result).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return int(reply.status)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdpipe-probe", description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path, help="an exported student: .onnx, or OpenVINO .xml (its .bin beside it)")
    p.add_argument("--images", type=Path, help="a folder of class folders (by class name or index): adds top-1")
    p.add_argument("--device", help="the name this machine goes by in the result (default: its hostname)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    p.add_argument("--probes", type=int, default=3, help="fresh probe processes; latency is their median")
    p.add_argument("--repeats", type=int, default=200, help="timed batch-1 calls per probe")
    p.add_argument("--warmup", type=int, default=20, help="untimed batch-1 calls before timing")
    p.add_argument("--batch-size", type=int, default=64, help="the throughput figure's batch")
    p.add_argument("--out", type=Path, help="write the JSON result here (default: print it)")
    p.add_argument("--post", metavar="URL", help="also POST the JSON result to URL")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = probe_file(
            args.file,
            images=args.images,
            threads=args.threads,
            repeats=args.repeats,
            warmup=args.warmup,
            batch_size=args.batch_size,
            probes=args.probes,
            device=args.device,
        )
        text = json.dumps(result, indent=2) + "\n"
        if args.out:
            args.out.write_text(text)
        else:
            print(text, end="")
        if args.post:
            post(result, args.post)
    except (runtimes.ProbeError, OSError) as exc:
        print(f"kdpipe-probe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
