"""CAM-stage cost of the video frames' stride-8 features (the video cut's appearance term): the
same frames through ``compute_cams`` as the CAM stage runs them (no LayerCAM) without features,
with the features handed on from the CAMs' own pass, and with a separate ``appearance_features``
pass after them, chunk by chunk in turn (a busy machine slows all three alike).

    .venv/bin/python benchmarks/appearance_cost.py --model /tmp/os32/clf.pt \
        --collection ../shared/data/dev --limit 64

Prints frames/s of each and the ratios to the CAMs alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from cam_cost import classifier_with_prior, cost_args, seconds_in_turn
from video_quality import decode

from pipeline.cam import appearance_features, compute_cams
from pipeline.cam_config import CamConfig
from pipeline.collection import load_label_space


def video_frames(root: Path, limit: int) -> list[tuple]:
    """(frame, tag ids) of the collection's video frames, up to limit."""
    classes = list(load_label_space(str(root)))
    rows = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for row in (r for r in rows if r.get("kind") == "video"):
        tags = [classes.index(t) for t in row["tags"]]
        out += [(frame, tags) for frame in decode(root / row["uri"])]
    return out[:limit]


def main() -> None:
    args = cost_args(__doc__)
    frames = video_frames(Path(args.collection), args.limit)
    model, prior = classifier_with_prior(args.model)
    cfg = CamConfig(layer_cam=False)

    def cams(images, tags):
        compute_cams(model, images, tags, cfg, prior=prior)

    def shared(images, tags):
        compute_cams(model, images, tags, cfg, prior=prior, appearance=[])

    def separate(images, tags):
        compute_cams(model, images, tags, cfg, prior=prior)
        appearance_features(model, images, cfg)

    runs = {"CAMs alone": cams, "features from the CAM pass": shared, "separate pass": separate}
    chunks = (
        ([f for f, _ in part], [t for _, t in part])
        for part in (frames[s : s + args.chunk] for s in range(0, len(frames), args.chunk))
    )
    seconds = seconds_in_turn(chunks, runs)
    base = seconds["CAMs alone"]
    for name in runs:
        print(
            f"{name:>27}: {len(frames) / seconds[name]:.2f} frames/s ({seconds[name]:.1f} s),"
            f" {seconds[name] / base:.2f}x"
        )


if __name__ == "__main__":
    main()
