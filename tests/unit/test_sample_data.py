import json

import cv2
import pytest

from pipeline.collection import read_collection
from pipeline.sample_data import CLASSES, PHOTO_CLASSES, PHOTOS, generate


def test_demo_collection_adds_the_installed_real_photos_with_their_tags(tmp_path):
    pytest.importorskip("skimage")
    root = generate(str(tmp_path / "c"), images=2, videos=0, photos=True)
    collection = read_collection(root)
    photos = {item.id: item for item in collection.items if item.id.startswith("photo_")}
    assert len(photos) == len(PHOTOS)
    assert photos["photo_chelsea"].tags == ("cat",) and photos["photo_coffee"].tags == ()
    image = cv2.imread(photos["photo_astronaut"].uri)
    assert image is not None and image.shape == (512, 512, 3)
    assert list(collection.classes) == CLASSES + PHOTO_CLASSES


def test_without_photos_the_label_space_is_the_synthetic_one(tmp_path):
    generate(str(tmp_path / "c"), images=2, videos=0)
    assert json.loads((tmp_path / "c" / "classes.json").read_text()) == CLASSES
    assert not list((tmp_path / "c" / "media").glob("photo_*"))
