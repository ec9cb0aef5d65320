"""Pseudo-label throughput: the Ray Data pipeline against a sequential loop over the same cores.

    python benchmarks/pseudo_label_throughput.py [--collection DIR] [--images N] [--model URI|none]

Both runs label the same N images of the collection (default: the dev collection) with the same
config; the report gives items/s of each and the ratio (pipeline / sequential). On one 2-core machine
the ratio shows the overhead or gain of the Ray graph; on a cluster it shows scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.collection import read_collection  # noqa: E402
from pipeline.decode import read_image  # noqa: E402
from pipeline.label_config import PseudoLabelConfig  # noqa: E402
from pipeline.labelling import label_image_item  # noqa: E402


def subset_collection(source: str, images: int, root: str) -> str:
    rows = [json.loads(line) for line in Path(source, "manifest.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r.get("kind", "image") == "image"][:images]
    for row in picked:
        row["uri"] = str(Path(source, row["uri"]))
    Path(root, "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked))
    return root


def sequential(collection_uri: str, model_uri: str | None, cfg: PseudoLabelConfig) -> float:
    from pipeline.cam import compute_cams
    from pipeline.checkpoint import load_classifier

    model = load_classifier(model_uri)[0] if model_uri else None
    started = time.perf_counter()
    for item in read_collection(collection_uri, cfg.collection).items:
        image = read_image(item.uri, cfg.decode)
        cam = None
        if model is not None and item.tag_ids:
            cam = compute_cams(model, [image], [list(item.tag_ids)], cfg.cam)[0][0]
        label_image_item(image, cam, list(item.tag_ids), cfg.image)
    return time.perf_counter() - started


def pipelined(collection_uri: str, model_uri: str | None, cfg: PseudoLabelConfig) -> float:
    from pipeline.cluster.dataflow import run_pseudo_label
    from pipeline.cluster.runtime import init_ray

    init_ray()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        run_pseudo_label(collection_uri, model_uri, out, cfg)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = os.environ.get("WSSS_SAMPLE_DIR", str(REPO.parent / "shared" / "data" / "dev"))
    parser.add_argument("--collection", default=default)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--model", default="none")
    args = parser.parse_args()
    model = None if args.model == "none" else args.model
    cfg = PseudoLabelConfig()
    with tempfile.TemporaryDirectory() as root:
        collection = subset_collection(args.collection, args.images, root)
        base = sequential(collection, model, cfg)
        ray_s = pipelined(collection, model, cfg)
    print(
        json.dumps(
            {
                "images": args.images,
                "sequential_s": round(base, 1),
                "pipeline_s": round(ray_s, 1),
                "sequential_items_per_s": round(args.images / base, 2),
                "pipeline_items_per_s": round(args.images / ray_s, 2),
                "speedup_ratio": round(base / ray_s, 2),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
