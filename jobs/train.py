"""Train a model on a Ray cluster: `classifier` runs `webseg train-classifier`, `segmenter` runs
`webseg train-segmenter`; the flags after the kind are that command's.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"AWS_ENDPOINT_URL": "http://S3HOST:8333",
                             "AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "...",
                             "MLFLOW_TRACKING_URI": "http://MLFLOWHOST:5000"}}' \
        -- python -m jobs.train classifier --collection s3://webseg/collection \
           --out s3://webseg/models/classifier.pt --epochs 30 --workers 2 \
           --tracking-uri http://MLFLOWHOST:5000
"""

from __future__ import annotations

import sys

from pipeline import cli

KINDS = {"classifier": "train-classifier", "segmenter": "train-segmenter"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in KINDS:
        print(
            f"usage: python -m jobs.train {{{','.join(KINDS)}}} [flags of webseg train-KIND]",
            file=sys.stderr,
        )
        return 2
    return cli.main([KINDS[argv[0]], *argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
