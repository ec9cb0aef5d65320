"""Label a collection on a Ray cluster (`webseg pseudo-label`, same flags).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"AWS_ENDPOINT_URL": "http://S3HOST:8333",
                             "AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "..."}}' \
        -- python -m jobs.pseudo_label --collection s3://webseg/collection \
           --model s3://webseg/models/classifier.pt --out s3://webseg/labels

Rerunning with the same --out resumes: finished items are skipped.
"""

from __future__ import annotations

import sys

from pipeline import cli


def main(argv: list[str] | None = None) -> int:
    return cli.main(["pseudo-label", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
