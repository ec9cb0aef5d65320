"""Plain-torch models: backbones, the CAM classifier and DeepLab; their config in models.config
(torch-free, so pipeline.settings can import it: this file imports nothing)."""
