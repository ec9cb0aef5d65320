"""CAM cost by images per forward pass (``cam.batch_size``) on video frames: CPU seconds and peak
memory of ``compute_cams`` over the first ``--frames`` frames of one video, each batch size in a
fresh process of its own (so each peak is its own), one torch thread as in a 1-CPU actor.

    .venv/bin/python benchmarks/cam_images_per_pass.py --model /tmp/dev/clf.pt \\
        --video ../shared/data/dev/media/web_car_with_intro.mp4 [--sizes 1 2 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(model_uri: str, video: str, frames: int, size: int) -> dict:
    import torch

    from pipeline.cam import CamConfig, compute_cams
    from pipeline.checkpoint import load_classifier
    from pipeline.decode import DecodeConfig, read_video_frames
    from pipeline.models.imagenet_prior import load_prior

    torch.set_num_threads(1)
    model, model_cfg, classes = load_classifier(model_uri)
    prior = load_prior(model.backbone, model_cfg.backbone, list(classes))
    images = [f for _, f in read_video_frames(video, DecodeConfig())][:frames]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    started = time.process_time()
    compute_cams(model, images, [[1]] * len(images), CamConfig(batch_size=size), prior=prior)
    return {
        "images_per_pass": size,
        "frames": len(images),
        "cpu_s": round(time.process_time() - started, 1),
        "peak_rss_mib_before": before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process's own size
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, args.video, args.frames, args.one)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print("| images per pass | frames | CPU s | peak RSS MiB (after loading) |\n|---|---|---|---|")
    for size in args.sizes:
        command = [sys.executable, __file__, "--model", args.model, "--video", args.video,
                   "--frames", str(args.frames), "--one", str(size)]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {size} | {r['frames']} | {r['cpu_s']} | {r['peak_rss_mib']} "
              f"({r['peak_rss_mib_before']}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
