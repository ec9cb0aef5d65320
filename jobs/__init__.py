"""Cluster entrypoints only: each `python -m jobs.X` parses its arguments and runs one `webseg`
command with the same flags through `pipeline.cli.main`.

Submit them with `ray job submit --working-dir . -- python -m jobs.X ...` (see docs/cluster.md).
Inside a job, RAY_ADDRESS is set by Ray, so the commands join the cluster instead of starting a
local Ray; S3 and MLflow settings reach the job through `--runtime-env-json '{"env_vars": ...}'`.
"""
