"""The scheduled retrain: its state under WORK/state/ (state: watermarks, the lease lock,
decisions), the model steps it drives (steps: Steps, MlflowSteps) and the run that decides
(run: run_retrain and the `webseg retrain` command).
"""
