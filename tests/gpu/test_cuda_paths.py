"""CUDA paths: skipped on machines without a GPU."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_cams_on_cuda_match_cpu():
    from pipeline.cam import compute_cams
    from pipeline.cam_config import CamConfig
    from pipeline.models.classifier import CamClassifier
    from pipeline.models.config import ModelConfig

    torch.manual_seed(0)
    model = CamClassifier(ModelConfig(backbone="resnet", depth=18, width=16)).eval()
    images = [np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)]
    cfg = CamConfig(input_size=96, flip=False)
    cpu_cams, cpu_scores = compute_cams(model, images, [[1, 2]], cfg, device="cpu")
    gpu_cams, gpu_scores = compute_cams(model.cuda(), images, [[1, 2]], cfg, device="cuda")
    np.testing.assert_allclose(cpu_scores[0], gpu_scores[0], atol=1e-3)
    np.testing.assert_allclose(cpu_cams[0], gpu_cams[0], atol=1e-2)


def test_deeplab_forward_with_amp_on_cuda():
    from pipeline.models.config import DeepLabConfig
    from pipeline.models.deeplab import DeepLabV3

    model = DeepLabV3(DeepLabConfig(num_classes=21)).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 128, 128, device="cuda"))
    assert out.shape == (2, 21, 128, 128)
