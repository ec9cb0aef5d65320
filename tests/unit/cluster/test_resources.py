"""The one 'auto' resources rule (pipeline.cluster.resources), on plain cluster dicts: no Ray."""

import subprocess
import sys
from dataclasses import replace

import pytest

from pipeline.cluster.resources import (
    auto_gpus,
    resolve_accelerated,
    resolve_predict_resources,
    resolve_pseudo_label_resources,
    resolve_use_gpu,
)
from pipeline.label_config import AUTO, ResourcesConfig, StageResources
from pipeline.settings import PredictConfig

UNFUSED = ResourcesConfig(fuse_cam_refine=False)


def test_auto_gpus_follow_the_cluster_and_numbers_stay():
    assert auto_gpus("auto", {"CPU": 8.0, "GPU": 2.0}) == 1.0
    assert auto_gpus("auto", {"CPU": 8.0}) == 0.0
    assert auto_gpus("auto", {"CPU": 8.0, "GPU": 0.0}) == 0.0
    assert auto_gpus(0.5, {"CPU": 8.0}) == 0.5
    assert auto_gpus(True, {}) == 1.0 and auto_gpus(False, {"GPU": 4.0}) == 0.0


def test_accelerated_stage_actors_per_gpu_or_per_cpus():
    auto = StageResources(num_gpus="auto")
    gpu = resolve_accelerated(auto, {"CPU": 64.0, "GPU": 3.0}, cpus_per_cpu_actor=8)
    assert (gpu.actors, gpu.num_gpus) == (3, 1.0)
    half = resolve_accelerated(StageResources(num_gpus=0.5), {"GPU": 2.0}, cpus_per_cpu_actor=8)
    assert half.actors == 4
    cpu = resolve_accelerated(auto, {"CPU": 20.0}, cpus_per_cpu_actor=8)
    assert (cpu.actors, cpu.num_gpus) == (2, 0.0)
    empty = resolve_accelerated(auto, {}, cpus_per_cpu_actor=8)  # no CPU key: 1 CPU, 1 actor
    assert (empty.actors, empty.num_gpus) == (1, 0.0)


def test_use_gpu_is_true_false_or_the_clusters_gpus():
    assert resolve_use_gpu("auto", {"CPU": 4.0, "GPU": 1.0}) is True
    assert resolve_use_gpu("auto", {"CPU": 4.0}) is False
    assert resolve_use_gpu(True, {"CPU": 4.0}) is True
    assert resolve_use_gpu(False, {"CPU": 4.0, "GPU": 1.0}) is False


def test_use_gpu_must_be_bool_or_auto():
    with pytest.raises(ValueError):
        resolve_use_gpu("yes", {"GPU": 1.0})


def test_auto_uses_gpus_of_the_cluster_not_the_driver():
    res = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": 32.0, "GPU": 4.0})
    assert res.cam.num_gpus == 1.0 and res.cam.actors == 4
    assert res.refine.actors >= 1 and res.refine.num_gpus == 0.0


def test_cpu_only_cluster_fuses_cam_and_refine_one_actor_per_cpu_beside_the_tasks():
    for cpus, actors in ((3.0, 2), (4.0, 3), (16.0, 15), (1.0, 1)):
        res = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": cpus})
        assert res.fuse_cam_refine is True and res.cam.num_gpus == 0.0, cpus
        assert res.cam.actors == actors, cpus
        tasks = res.decode.num_cpus + res.write.num_cpus
        assert res.cam.actors * res.cam.num_cpus + tasks <= cpus or cpus < 2, cpus


def test_gpus_keep_cam_and_refine_apart_and_explicit_fusion_is_kept():
    gpu = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": 32.0, "GPU": 4.0})
    assert gpu.fuse_cam_refine is False
    unfused = ResourcesConfig(fuse_cam_refine=False)
    assert resolve_pseudo_label_resources(unfused, {"CPU": 8.0}).fuse_cam_refine is False
    fused = ResourcesConfig(fuse_cam_refine=True)
    assert resolve_pseudo_label_resources(fused, {"CPU": 8.0, "GPU": 1.0}).fuse_cam_refine is True
    with pytest.raises(ValueError, match="fuse_cam_refine"):
        ResourcesConfig(fuse_cam_refine="yes")


def test_cpu_only_cluster_unfused_gets_no_gpus_and_fits_every_stage():
    for cpus, cam_actors in ((3.0, 2), (4.0, 3), (16.0, 12), (1.0, 1)):
        res = resolve_pseudo_label_resources(UNFUSED, {"CPU": cpus})
        assert res.cam.num_gpus == 0.0 and res.cam.actors == cam_actors, cpus
        total = (
            res.cam.actors * res.cam.num_cpus
            + res.refine.actors * res.refine.num_cpus
            + res.decode.num_cpus
            + res.write.num_cpus
        )
        assert res.refine.actors >= 1 and (total <= cpus or cpus < 2), cpus


def test_cam_rows_per_batch_auto_is_one_on_cpus_and_more_on_gpus():
    cpu = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": 8.0})
    gpu = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": 8.0, "GPU": 1.0})
    assert cpu.cam.batch_size == 1 and gpu.cam.batch_size > 1
    fixed = ResourcesConfig(cam=StageResources(num_gpus=AUTO, batch_size=3))
    assert resolve_pseudo_label_resources(fixed, {"CPU": 8.0}).cam.batch_size == 3


def test_a_laptop_gets_two_refine_actors_sharing_the_spare_cpus():
    # 2 cores -> a local Ray of 3 logical CPUs: 2 CAM actors, and the 0.5 CPU left is shared by
    # two refine actors so that two video windows are cut at once
    res = resolve_pseudo_label_resources(UNFUSED, {"CPU": 3.0})
    assert (res.cam.actors, res.refine.actors) == (2, 2)
    assert res.refine.num_cpus == 0.25


def test_batch_size_auto_only_where_it_is_resolved():
    with pytest.raises(ValueError, match="resources.refine.batch_size: auto is for cam only"):
        ResourcesConfig(refine=StageResources(batch_size=AUTO))
    with pytest.raises(ValueError, match="positive integer or auto"):
        StageResources(batch_size=0)
    assert resolve_predict_resources(StageResources(batch_size=AUTO), {"CPU": 4.0}).batch_size == 1


def test_cpu_cam_share_moves_cpus_between_cam_and_refine():
    more = resolve_pseudo_label_resources(replace(UNFUSED, cpu_cam_share=0.9), {"CPU": 16.0})
    less = resolve_pseudo_label_resources(replace(UNFUSED, cpu_cam_share=0.3), {"CPU": 16.0})
    assert more.cam.actors > less.cam.actors and more.refine.actors < less.refine.actors


def test_explicit_values_are_kept():
    cfg = ResourcesConfig(
        cam=StageResources(actors=2, num_gpus=0.5), refine=StageResources(actors=7)
    )
    res = resolve_pseudo_label_resources(cfg, {"CPU": 8.0, "GPU": 1.0})
    assert (res.cam.actors, res.cam.num_gpus, res.refine.actors) == (2, 0.5, 7)


def test_predict_pool_follows_the_cluster_gpus_or_cpus():
    auto = PredictConfig().resources
    gpu = resolve_predict_resources(auto, {"CPU": 16.0, "GPU": 2.0})
    assert (gpu.actors, gpu.num_gpus) == (2, 1.0)
    cpu = resolve_predict_resources(auto, {"CPU": 6.0})
    assert (cpu.actors, cpu.num_gpus) == (3, 0.0)
    tiny = resolve_predict_resources(auto, {"CPU": 1.0})
    assert tiny.actors == 1
    fixed = resolve_predict_resources(StageResources(actors=5, num_gpus=0.25), {"GPU": 1.0})
    assert (fixed.actors, fixed.num_gpus) == (5, 0.25)


def test_the_rule_loads_no_ray_or_torch():
    code = (
        "import sys, pipeline.cluster.resources\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_decode_and_write_run_one_task_per_cam_actor_at_once_unless_set():
    cpu = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": 16.0})
    assert cpu.decode.actors == cpu.write.actors == cpu.cam.actors == 15
    gpu = resolve_pseudo_label_resources(ResourcesConfig(), {"CPU": 32.0, "GPU": 4.0})
    assert gpu.decode.actors == gpu.write.actors == 4
    set_by_user = ResourcesConfig(write=StageResources(actors=3, num_cpus=0.25, batch_size=8))
    res = resolve_pseudo_label_resources(set_by_user, {"CPU": 16.0})
    assert res.write.actors == 3 and res.decode.actors == 15
