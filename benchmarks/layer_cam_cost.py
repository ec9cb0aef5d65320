"""CAM-stage cost of the stride-16 LayerCAM (``cam.layer_cam``): the same images through
``compute_cams`` with it off and on, chunk by chunk in turn (a busy machine slows both alike).

    .venv/bin/python benchmarks/layer_cam_cost.py --model /tmp/os32/clf.pt \
        --collection ../shared/data/dev --limit 64

Prints images/s of each and the ratio.
"""

from __future__ import annotations

from pathlib import Path

from cam_cost import classifier_with_prior, cost_args, seconds_in_turn
from image_quality import load_items, read_rgb

from pipeline.cam import compute_cams
from pipeline.cam_config import CamConfig


def main() -> None:
    args = cost_args(__doc__)
    root = Path(args.collection)
    items = load_items(root)[: args.limit]
    model, prior = classifier_with_prior(args.model)
    cfgs = {"off": CamConfig(layer_cam=False), "on": CamConfig(layer_cam=True)}
    chunks = (
        ([read_rgb(root, it) for it in chunk], [it["tag_ids"] for it in chunk])
        for chunk in (items[s : s + args.chunk] for s in range(0, len(items), args.chunk))
    )
    runs = {
        name: (lambda images, tags, cfg=cfg: compute_cams(model, images, tags, cfg, prior=prior))
        for name, cfg in cfgs.items()
    }
    seconds = seconds_in_turn(chunks, runs)
    for name in cfgs:
        print(
            f"layer_cam {name:>3}: {len(items) / seconds[name]:.2f} images/s ({seconds[name]:.1f} s)"
        )
    print(f"on / off time: {seconds['on'] / seconds['off']:.2f}x over {len(items)} images")


if __name__ == "__main__":
    main()
