"""'auto' resources, resolved from the Ray cluster's resources: one rule for every command.

Callers pass `ray.cluster_resources()` as a plain dict ({"CPU": 16.0, "GPU": 2.0, ...}); this module
imports no Ray and no torch. It reads the cluster, never the driver's own hardware: the driver of a
GPU cluster often has no GPU.

- GPUs 'auto' (a stage's num_gpus, a trainer's use_gpu): 1 per actor or worker when the cluster has
  GPUs, else 0 (`auto_gpus`, the only place that decides it);
- actors 'auto': one per GPU, or on a CPU-only cluster one per `cpus_per_cpu_actor` CPUs
  (`resolve_accelerated`); pseudo-label splits a CPU-only cluster between CAM and refinement,
  and runs as many decode and write tasks at once as it has CAM actors.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.label_config import AUTO, ResourcesConfig, StageResources

GPU_CAM_ROWS = 4  # cam.batch_size auto on GPUs: rows per batch, so a GPU sees full batches
MIN_REFINE_ACTORS = 2


def auto_gpus(value: bool | float | str, cluster: dict[str, float]) -> float:
    """GPUs per actor or worker: 'auto' -> 1.0 when the cluster has GPUs, else 0.0; else the value."""
    if value == AUTO:
        return 1.0 if float(cluster.get("GPU", 0)) > 0 else 0.0
    return float(value)


def resolve_accelerated(
    res: StageResources, cluster: dict[str, float], cpus_per_cpu_actor: int
) -> StageResources:
    """A stage that may use GPUs: 'auto' num_gpus by `auto_gpus`; 'auto' actors: one per GPU, or
    on a CPU-only cluster one per cpus_per_cpu_actor CPUs."""
    gpus, cpus = float(cluster.get("GPU", 0)), float(cluster.get("CPU", 1))
    num_gpus = auto_gpus(res.num_gpus, cluster)
    actors = res.actors
    if actors == AUTO:
        per_cpu = max(1, int(cpus // cpus_per_cpu_actor))
        actors = max(1, int(gpus // num_gpus)) if num_gpus > 0 else per_cpu
    return replace(res, actors=int(actors), num_gpus=num_gpus)


def resolve_predict_resources(res: StageResources, cluster: dict[str, float]) -> StageResources:
    """webseg predict's actor pool: 'auto' GPUs: 1 per actor when the cluster has GPUs; 'auto'
    actors: one per GPU, or on a CPU-only cluster one per two CPUs; 'auto' batch_size: one row."""
    res = resolve_accelerated(res, cluster, cpus_per_cpu_actor=2)
    return replace(res, batch_size=1) if res.batch_size == AUTO else res


def resolve_pseudo_label_resources(
    res: ResourcesConfig, cluster: dict[str, float]
) -> ResourcesConfig:
    """webseg pseudo-label's stages: CAM as an accelerated stage. On a CPU-only cluster CAM and
    refinement run fused by default (with decode and write inside the same actors), one actor per
    CPU left after decode's and write's CPUs (kept for the driver and Ray's own processes);
    unfused, CAM gets cpu_cam_share of the CPUs and 'auto' refine actors fill the CPUs left (at
    least two); fuse_cam_refine comes back resolved to true or false. CAM's
    'auto' batch_size: GPU_CAM_ROWS rows with GPUs, one row on CPUs (a CPU runs a batch no faster
    than its images one by one, docs/quality.md, and a batch of several video windows would keep
    one actor busy while the others idle at the end of a run)."""
    cam = resolve_accelerated(res.cam, cluster, cpus_per_cpu_actor=8)
    cpus = float(cluster.get("CPU", 1))
    tasks = res.decode.num_cpus + res.write.num_cpus
    fuse = cam.num_gpus == 0 if res.fuse_cam_refine == AUTO else bool(res.fuse_cam_refine)
    if fuse and res.cam.actors == AUTO:
        cam = replace(cam, actors=max(1, int((cpus - tasks) // cam.num_cpus)))
    elif cam.num_gpus == 0 and res.cam.actors == AUTO:
        cam = replace(cam, actors=_cpu_cam_actors(res, cpus - tasks))
    if cam.batch_size == AUTO:
        cam = replace(cam, batch_size=GPU_CAM_ROWS if cam.num_gpus > 0 else 1)
    spare = cpus - cam.num_cpus * int(cam.actors) - tasks
    refine = replace(res.refine, num_gpus=0.0)
    if refine.actors == AUTO:
        refine = _auto_refine(refine, spare)
    decode, write = (_task_cap(stage, int(cam.actors)) for stage in (res.decode, res.write))
    return replace(res, decode=decode, cam=cam, refine=refine, write=write, fuse_cam_refine=fuse)


def _task_cap(stage: StageResources, cam_actors: int) -> StageResources:
    """decode/write tasks at once, 'auto': one per CAM actor (a decoder feeds each, and a writer
    keeps pace with the refinement behind it). Uncapped, the write tasks queued behind the actors
    all start when the actor pools release their CPUs at the end of a run, each in a fresh worker
    process of a few hundred MiB: a peak of memory that grows with the length of the run."""
    return replace(stage, actors=cam_actors) if stage.actors == AUTO else stage


def _auto_refine(refine: StageResources, spare: float) -> StageResources:
    """Refine actors filling the spare CPUs, at least MIN_REFINE_ACTORS of them (sharing the
    spare CPUs when it holds fewer): a video window is one row and seconds of graph cut, so a
    single refine actor leaves the machine half idle while it works through a video."""
    actors = max(MIN_REFINE_ACTORS, int(spare // refine.num_cpus))
    num_cpus = refine.num_cpus
    if spare > 0 and actors * num_cpus > spare:
        num_cpus = spare / actors
    return replace(refine, actors=actors, num_cpus=num_cpus)


def _cpu_cam_actors(res: ResourcesConfig, cpus: float) -> int:
    """CAM actors of a CPU-only cluster: cpu_cam_share of the CPUs (with a pretrained backbone the
    CAM costs about 3x the refinement per item on a CPU; docs/cluster.md), leaving one refine
    actor's CPUs at least."""
    wanted = round(cpus * res.cpu_cam_share / res.cam.num_cpus)
    fits = int((cpus - res.refine.num_cpus) // res.cam.num_cpus)
    return max(1, min(wanted, fits))


def resolve_use_gpu(use_gpu: bool | str, cluster: dict[str, float]) -> bool:
    """A Ray Train trainer's use_gpu: True, False, or 'auto' by `auto_gpus`."""
    if use_gpu != AUTO and not isinstance(use_gpu, bool):
        raise ValueError(f"use_gpu must be true, false or 'auto', got {use_gpu!r}")
    return auto_gpus(use_gpu, cluster) > 0
