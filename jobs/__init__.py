"""Cluster entrypoints: each `python -m jobs.X` runs one `webseg` command with the same flags.

Submit them with `ray job submit --working-dir . -- python -m jobs.X ...` (see docs/cluster.md).
Inside a job, RAY_ADDRESS is set by Ray, so the commands join the cluster instead of starting a
local Ray; S3 and MLflow settings reach the job through `--runtime-env-json '{"env_vars": ...}'`.
"""

from __future__ import annotations

import sys


def run_command(name: str, argv: list[str] | None = None) -> int:
    """`webseg NAME ARGV...` in this process; returns its exit status."""
    from pipeline import cli, commands

    if name not in commands.COMMANDS:  # a command the CLI does not register (yet): add it here
        from pipeline.retrain import RETRAIN_COMMANDS

        commands.COMMANDS.update({k: v for k, v in RETRAIN_COMMANDS.items() if k == name})
    return cli.main([name, *(sys.argv[1:] if argv is None else argv)])
