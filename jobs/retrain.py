"""Scheduled retraining on a Ray cluster (`webseg retrain`, same flags; see pipeline/retrain/run.py).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"AWS_ENDPOINT_URL": "http://S3HOST:8333",
                             "AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "..."}}' \
        -- python -m jobs.retrain --collection s3://webseg/collection \
           --holdout s3://webseg/holdout --work s3://webseg/retrain \
           --tracking-uri sqlite:////shared/mlflow.db

Each run labels only items that are new since the last one, trains warm-started from the
`champion` model, and moves the alias only when the held-out score improves. With no new items
it does nothing and says so; an overlapping run exits without promoting.
"""

from __future__ import annotations

import sys

from pipeline import cli


def main(argv: list[str] | None = None) -> int:
    return cli.main(["retrain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
