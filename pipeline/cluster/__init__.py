"""Everything that talks to Ray outside training: connecting (runtime), Ray's log output
(ray_logging), the Ray Data stage adapters (stages) and graphs (dataflow, predict_dataflow); and
the one rule for 'auto' resources (resources: Ray-free, fed ray.cluster_resources(), also by train/).

Kept empty on purpose: Ray workers import `pipeline.cluster.ray_logging` as their setup hook.
"""
