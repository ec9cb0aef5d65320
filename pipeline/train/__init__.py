"""Ray Train loops: the CAM classifier (classifier.py) and, later, the segmenter."""
