"""Ray Train loops: the CAM classifier (classifier.py) and the segmenter (segmenter.py); their
config, without Ray, in config.py."""
