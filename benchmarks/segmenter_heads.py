"""Segmenter heads (`segmenter.model.head`) side by side: parameters, forward GFLOPs and CPU
forward speed, and optionally quality after training each through the real CLI.

Speed: one thread (torch.set_num_threads(1)), eval mode, batch 1 at --size (320) px, the shipped
segmenter config (EfficientNet-Lite0, output stride 16, 128 channels, 21 classes) but for the head.
Each head gets --warmup untimed runs, then --rounds rounds in which every head runs once in turn
(interleaved, so a busy machine slows every head alike); images/s is 1 / the median wall time,
images per CPU-second 1 / the median CPU time of the forward pass.

    .venv/bin/python benchmarks/segmenter_heads.py --json-out heads.json

With --train-labels LABELS --collection COLLECTION (ground truth under gt/), every head is also
trained by `webseg train-segmenter --config` (a YAML setting segmenter.model.head), run by
`webseg predict --restrict-to-tags` on the collection and scored by `webseg evaluate`:

    .venv/bin/python benchmarks/segmenter_heads.py --train-labels labels --collection ../dev \
        --epochs 4 --work-dir /tmp/heads

Prints a markdown table and writes the same figures as JSON (--json-out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.models.config import HEADS, DeepLabConfig
from pipeline.models.deeplab import DeepLabV3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    p.add_argument("--backbone", default=DeepLabConfig.backbone)
    p.add_argument("--size", type=int, default=320, help="square input side (px)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per head")
    p.add_argument("--rounds", type=int, default=7, help="timed runs per head (median)")
    p.add_argument("--json-out", default="segmenter_heads.json")
    p.add_argument("--train-labels", help="pseudo-label set: also train and score every head")
    p.add_argument("--collection", help="collection with gt/ to predict on and score")
    p.add_argument("--epochs", type=int, default=2, help="train-segmenter epochs")
    p.add_argument("--work-dir", default="segmenter_heads_runs", help="models, predictions")
    args = p.parse_args(argv)
    if args.train_labels and not args.collection:
        p.error("--train-labels needs --collection (ground truth to score against)")
    return args


def build(head: str, backbone: str) -> DeepLabV3:
    torch.manual_seed(0)
    return DeepLabV3(replace(DeepLabConfig(backbone=backbone), head=head)).eval()


def parameter_counts(model: DeepLabV3) -> dict[str, int]:
    backbone, head = model.param_groups()
    return {"params": sum(p.numel() for p in backbone + head),
            "head_params": sum(p.numel() for p in head)}  # fmt: skip


def gflops(model: DeepLabV3, size: int) -> float:
    """Forward GFLOPs at size x size (torch's counter: convolutions and matmuls, 2 per MAC);
    unlike the timings, independent of the machine's load."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def _seconds(model: DeepLabV3, x: torch.Tensor) -> tuple[float, float]:
    """(wall, CPU) seconds of one forward pass; with one thread on a shared machine the CPU
    time is the steadier of the two (waiting for a core does not count)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - wall, time.thread_time() - cpu


def time_heads(models: dict[str, DeepLabV3], size: int, warmup: int, rounds: int) -> dict:
    """{head: {"images_per_s": by median wall time, "images_per_cpu_s": by median CPU time}},
    heads interleaved within every round."""
    x = torch.randn(1, 3, size, size)
    for model in models.values():
        for _ in range(warmup):
            _seconds(model, x)
    times: dict[str, list[tuple[float, float]]] = {head: [] for head in models}
    for _ in range(rounds):
        for head, model in models.items():
            times[head].append(_seconds(model, x))
    return {head: _rates(values) for head, values in times.items()}


def _rates(times: list[tuple[float, float]]) -> dict[str, float]:
    wall, cpu = (statistics.median(column) for column in zip(*times, strict=True))
    return {"images_per_s": 1.0 / wall, "images_per_cpu_s": 1.0 / cpu}


def webseg(*args: str) -> dict:
    command = [str(Path(sys.executable).with_name("webseg")), *args, "--json", "--quiet"]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return last_json(done.stdout)


def last_json(text: str) -> dict:
    """The JSON result a `webseg --json` command ends its stdout with (anything may precede it)."""
    start = 0 if text.startswith("{") else text.rindex("\n{") + 1
    return json.loads(text[start:])


def train_and_score(head: str, args: argparse.Namespace) -> dict:
    """Train one head through the CLI, predict the collection and score it."""
    work = Path(args.work_dir) / head
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text(f"segmenter:\n  model:\n    head: {head}\n")
    model, predicted = str(work / "model"), str(work / "predicted")
    started = time.perf_counter()
    webseg("train-segmenter", "--labels", args.train_labels, "--out", model,
            "--epochs", str(args.epochs), "--config", str(config))  # fmt: skip
    train_s = time.perf_counter() - started
    webseg("predict", "--model", model, "--collection", args.collection, "--out", predicted,
            "--restrict-to-tags", "--overwrite", "--config", str(config))  # fmt: skip
    scores = webseg("evaluate", "--labels", predicted, "--collection", args.collection)
    keys = ("image_miou", "frame_miou", "mean_video_j")
    return {"train_s": round(train_s, 1), **{k: scores.get(k) for k in keys}}


def table(rows: dict[str, dict]) -> str:
    columns = list(next(iter(rows.values())))
    lines = ["| head | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for head, row in rows.items():
        lines.append(f"| {head} | " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, int):
        return f"{value / 1e6:.2f} M" if value >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    models = {head: build(head, args.backbone) for head in args.heads}
    speed = time_heads(models, args.size, args.warmup, args.rounds)
    rows = {
        head: {**parameter_counts(model), "gflops": gflops(model, args.size), **speed[head]}
        for head, model in models.items()
    }
    if args.train_labels:
        for head in args.heads:
            rows[head].update(train_and_score(head, args))
    print(table(rows))
    keys = ("backbone", "size", "warmup", "rounds") + (("epochs",) if args.train_labels else ())
    setup = {k: getattr(args, k) for k in keys}
    result = {"setup": {**setup, "threads": 1, "torch": torch.__version__}, "heads": rows}
    Path(args.json_out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
