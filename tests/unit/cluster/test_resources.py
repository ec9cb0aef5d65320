from pipeline.cluster.dataflow import resolve_resources
from pipeline.label_config import ResourcesConfig, StageResources


def test_auto_uses_gpus_of_the_cluster_not_the_driver():
    res = resolve_resources(ResourcesConfig(), {"CPU": 32.0, "GPU": 4.0})
    assert res.cam.num_gpus == 1.0 and res.cam.actors == 4
    assert res.refine.actors >= 1 and res.refine.num_gpus == 0.0


def test_cpu_only_cluster_gets_no_gpus_and_fits_every_stage():
    for cpus, cam_actors in ((3.0, 2), (4.0, 3), (16.0, 12), (1.0, 1)):
        res = resolve_resources(ResourcesConfig(), {"CPU": cpus})
        assert res.cam.num_gpus == 0.0 and res.cam.actors == cam_actors, cpus
        total = (
            res.cam.actors * res.cam.num_cpus
            + res.refine.actors * res.refine.num_cpus
            + res.decode.num_cpus
            + res.write.num_cpus
        )
        assert res.refine.actors >= 1 and (total <= cpus or cpus < 2), cpus


def test_cpu_cam_share_moves_cpus_between_cam_and_refine():
    more = resolve_resources(ResourcesConfig(cpu_cam_share=0.9), {"CPU": 16.0})
    less = resolve_resources(ResourcesConfig(cpu_cam_share=0.3), {"CPU": 16.0})
    assert more.cam.actors > less.cam.actors and more.refine.actors < less.refine.actors


def test_explicit_values_are_kept():
    cfg = ResourcesConfig(
        cam=StageResources(actors=2, num_gpus=0.5), refine=StageResources(actors=7)
    )
    res = resolve_resources(cfg, {"CPU": 8.0, "GPU": 1.0})
    assert (res.cam.actors, res.cam.num_gpus, res.refine.actors) == (2, 0.5, 7)


def test_predict_pool_follows_the_cluster_gpus_or_cpus():
    from pipeline.cluster.predict_dataflow import resolve_predict_resources
    from pipeline.settings import PredictConfig

    auto = PredictConfig().resources
    gpu = resolve_predict_resources(auto, {"CPU": 16.0, "GPU": 2.0})
    assert (gpu.actors, gpu.num_gpus) == (2, 1.0)
    cpu = resolve_predict_resources(auto, {"CPU": 6.0})
    assert (cpu.actors, cpu.num_gpus) == (3, 0.0)
    tiny = resolve_predict_resources(auto, {"CPU": 1.0})
    assert tiny.actors == 1
    fixed = resolve_predict_resources(StageResources(actors=5, num_gpus=0.25), {"GPU": 1.0})
    assert (fixed.actors, fixed.num_gpus) == (5, 0.25)
