"""Retrain state and decisions: watermark compare-and-set, the lease lock, promotion rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.retrain import run as retrain
from pipeline.retrain.state import (
    Watermark,
    acquire_lock,
    commit_watermark,
    create_exclusive,
    read_watermark,
    release_lock,
)
from pipeline.settings import RetrainConfig


def _collection(root, ids):
    os.makedirs(root / "media", exist_ok=True)
    lines = [json.dumps({"id": i, "uri": f"media/{i}.jpg", "tags": ["dog"]}) for i in ids]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return str(root)


class FakeSteps:
    """Scores come from a list; records every call."""

    def __init__(self, scores, champion=None):
        self.scores, self.current, self.calls, self.promoted = list(scores), champion, [], []

    def label(self, collection_uri, labels_uri):
        lines = Path(collection_uri, "manifest.jsonl").read_text().splitlines()
        ids = [json.loads(x)["id"] for x in lines]
        self.calls.append(("label", ids))
        return {"counts": {"labelled": len(ids)}}

    def train(self, labels_uri, out_uri, init_from):
        self.calls.append(("train", init_from))
        return {
            "version": str(len(self.promoted) + 10),
            "model_uri": out_uri,
            "mlflow_run_id": None,
        }

    def score(self, model_uri, holdout_uri, out_uri):
        return self.scores.pop(0)

    def champion(self):
        return dict(self.current) if self.current else None

    def promote(self, version):
        self.promoted.append(version)
        self.current = {
            "version": version,
            "model_uri": "m",
            "checkpoint_uri": f"ck{version}",
            "score": None,
        }

    def record(self, decision):
        self.calls.append(("record", decision["action"]))


def test_decide_promotes_only_a_better_candidate():
    assert retrain.decide(40.0, None, 0.0)[0]
    assert retrain.decide(40.0, 39.9, 0.0)[0]
    assert not retrain.decide(40.0, 40.0, 0.0)[0]
    assert not retrain.decide(40.5, 40.0, 1.0)[0]
    assert not retrain.decide(float("nan"), 10.0, 0.0)[0]
    assert not retrain.decide(None, None, 0.0)[0]


def test_new_items_keeps_order_and_skips_processed():
    wm = Watermark(3, frozenset({"b", "d"}))
    assert retrain.new_items(["a", "b", "c", "a", "d"], wm) == ["a", "c"]


def test_watermark_compare_and_set(tmp_path):
    state = str(tmp_path / "state")
    first = read_watermark(state)
    assert first == Watermark(0, frozenset())
    assert commit_watermark(state, first, ["a", "b"], "run1")
    assert not commit_watermark(state, first, ["c"], "run2"), "same version twice"
    now = read_watermark(state)
    assert (now.version, now.ids, now.run) == (1, frozenset({"a", "b"}), "run1")
    assert commit_watermark(state, now, ["c"], "run3")
    assert read_watermark(state).ids == frozenset({"a", "b", "c"})


def test_lock_is_exclusive_and_stale_lease_is_taken_over_once(tmp_path):
    state = str(tmp_path / "state")
    ok, lease = acquire_lock(state, "A", ttl_s=60)
    assert ok and lease["owner"] == "A"
    ok, held = acquire_lock(state, "B", ttl_s=60)
    assert not ok and held["owner"] == "A"
    release_lock(state, "B")  # not the owner: no effect
    assert not acquire_lock(state, "C", ttl_s=60)[0]
    release_lock(state, "A")
    assert acquire_lock(state, "D", ttl_s=-1)[0]  # an already expired lease
    assert acquire_lock(state, "E", ttl_s=60)[0], "stale lease of D taken over"
    assert not acquire_lock(state, "F", ttl_s=60)[0]


def test_create_exclusive_never_leaves_temp_files(tmp_path):
    target = str(tmp_path / "x" / "a.json")
    assert create_exclusive(target, b"1")
    assert not create_exclusive(target, b"2")
    assert Path(target).read_bytes() == b"1"
    assert os.listdir(tmp_path / "x") == ["a.json"]


def test_run_labels_only_new_items_and_promotes_only_when_better(tmp_path):
    root = tmp_path / "collection"
    work = str(tmp_path / "work")
    steps = FakeSteps(scores=[30.0, 25.0])
    first = retrain.run_retrain(_collection(root, ["a", "b"]), "holdout", work, steps)
    assert first["action"] == "promoted" and steps.promoted == ["10"]
    assert ("label", ["a", "b"]) in steps.calls and ("train", None) in steps.calls

    again = retrain.run_retrain(str(root), "holdout", work, steps)
    assert again["action"] == "nothing" and "no new items" in again["reason"]
    assert not os.path.exists(os.path.join(work, "state", "decisions", f"{again['run']}.json"))

    steps.current["score"] = 30.0
    worse = retrain.run_retrain(_collection(root, ["a", "b", "c"]), "holdout", work, steps)
    assert worse["action"] == "rejected" and steps.promoted == ["10"]
    assert ("label", ["c"]) in steps.calls and ("train", "ck10") in steps.calls, "warm start"
    saved = json.loads(Path(work, "state", "decisions", f"{worse['run']}.json").read_text())
    assert saved["action"] == "rejected" and saved["new_items"] == 1
    assert read_watermark(os.path.join(work, "state")).version == 2
    assert not os.path.exists(os.path.join(work, "state", "lock.json")), "lock released"


def test_locked_run_does_nothing_and_records_why(tmp_path):
    root, work = tmp_path / "collection", tmp_path / "work"
    assert acquire_lock(str(work / "state"), "other", 60)[0]
    steps = FakeSteps(scores=[50.0])
    decision = retrain.run_retrain(_collection(root, ["a"]), "h", str(work), steps, RetrainConfig())
    assert decision["action"] == "locked" and not decision["promoted"]
    assert steps.calls == [] and steps.promoted == []


def test_lost_watermark_race_never_promotes(tmp_path, monkeypatch):
    root, work = tmp_path / "collection", str(tmp_path / "work")
    steps = FakeSteps(scores=[90.0])
    monkeypatch.setattr(retrain, "commit_watermark", lambda *a, **k: False)
    decision = retrain.run_retrain(_collection(root, ["a"]), "h", work, steps)
    assert decision["action"] == "lost-race" and steps.promoted == []


def test_handler_arguments_parse():
    import argparse

    handler, add_arguments, _ = retrain.RETRAIN_COMMANDS["retrain"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--collection", "c", "--holdout", "h", "--work", "w", "--epochs", "2"]
    )
    assert (args.collection, args.holdout, args.work, args.epochs, args.classifier) == (
        "c",
        "h",
        "w",
        2,
        "none",
    )
    assert callable(handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["--collection", "c"])
