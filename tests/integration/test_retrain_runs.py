"""Retraining with real processes: two overlapping runs never both promote; the real steps run
end to end twice on a generated collection (new data, then none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.retrain.run import run_retrain
from pipeline.retrain.state import read_watermark
from pipeline.retrain.steps import MlflowSteps
from pipeline.settings import RetrainConfig

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

# A run whose training takes `delay` seconds, so that two runs overlap; prints its decision.
SLOW_RUN = textwrap.dedent("""
    import json, os, sys, time
    from pipeline.retrain.run import run_retrain
    collection, work = sys.argv[1], sys.argv[2]
    barrier, delay = sys.argv[3], float(sys.argv[4])

    class Slow:
        def label(self, c, l): return {"counts": {}}
        def train(self, l, o, i):
            time.sleep(delay)
            return {"version": str(os.getpid()), "model_uri": o, "mlflow_run_id": None}
        def score(self, m, h, o): return 50.0
        def champion(self): return None
        def promote(self, v): open(os.path.join(work, "promoted-" + v), "w").close()
        def record(self, d): pass

    # both start together however long each interpreter took to come up (seconds under load)
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    while len(os.listdir(barrier)) < 2:
        time.sleep(0.05)
    print(json.dumps(run_retrain(collection, "holdout", work, Slow())))
""")

CAS_RACE = textwrap.dedent("""
    import sys, time
    from pipeline.retrain.state import Watermark, commit_watermark
    state, start_at, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    previous = Watermark(0, frozenset())  # all racers saw version 0
    time.sleep(max(0.0, start_at - time.time()))
    print(commit_watermark(state, previous, [name], name))
""")


def _collection(root: Path, ids: list[str]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"id": i, "uri": f"media/{i}.jpg", "tags": ["dog"]}) for i in ids]
    (root / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    return str(root)


def _spawn(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outputs(processes: list[subprocess.Popen]) -> list[str]:
    outs = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        outs.append(out.strip().splitlines()[-1])
    return outs


def test_two_overlapping_runs_do_not_both_promote(tmp_path):
    collection = _collection(tmp_path / "collection", ["a", "b", "c"])
    work = tmp_path / "work"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    runs = [_spawn(SLOW_RUN, collection, str(work), str(barrier), "8") for _ in range(2)]
    decisions = [json.loads(line) for line in _outputs(runs)]
    actions = sorted(d["action"] for d in decisions)
    assert actions == ["locked", "promoted"], decisions
    assert len(list(work.glob("promoted-*"))) == 1
    state = str(work / "state")
    assert read_watermark(state).ids == {"a", "b", "c"}
    assert len(list((work / "state" / "decisions").glob("*.json"))) == 2, "both decisions recorded"
    assert not (work / "state" / "lock.json").exists()


def test_watermark_compare_and_set_has_one_winner_across_processes(tmp_path):
    state = str(tmp_path / "state")
    start_at = str(time.time() + 3.0)
    racers = [_spawn(CAS_RACE, state, start_at, f"p{i}") for i in range(4)]
    assert sorted(_outputs(racers)) == ["False", "False", "False", "True"]
    assert read_watermark(state).version == 1


@pytest.mark.slow
def test_real_retrain_twice_new_data_then_none(tmp_path, ray_session):
    """pseudo-label -> train-segmenter -> predict + evaluate -> champion, then a no-op rerun."""
    pytest.importorskip("pipeline.train.segmenter")
    from pipeline import sample_data

    full = Path(sample_data.generate(str(tmp_path / "generated"), images=16, videos=0, seed=1))
    collection, holdout = _split(full, tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sections = {
        "segmenter": {
            "model": {"backbone": "resnet", "width": 8, "aspp_channels": 16},
            "pretrained": "none",
            "epochs": 1,
            "store_size": 128,
            "crop_size": 96,
            "eval_long_side": 128,
            "batch_size": 4,
            "tracking_uri": tracking,
            "registered_model_name": "webseg-retrain-test",
        },
        "pseudo_label": {"output": {"save_cams": False}},
    }
    cfg = RetrainConfig()
    steps = MlflowSteps(holdout, None, sections, cfg)
    first = run_retrain(collection, holdout, str(tmp_path / "work"), steps, cfg)
    assert first["action"] == "promoted", first
    assert first["new_items"] == 12 and first["candidate"]["score"] >= 0
    second = run_retrain(collection, holdout, str(tmp_path / "work"), steps, cfg)
    assert second["action"] == "nothing" and "no new items" in second["reason"]
    from mlflow import MlflowClient

    client = MlflowClient(steps.tracking_uri)
    champion = client.get_model_version_by_alias("webseg-retrain-test", "champion")
    assert str(champion.version) == first["candidate"]["version"]
    assert champion.tags["retrain.decision"] == "promoted"
    print(json.dumps({"first": first, "second": second}, indent=1, default=str))


def _split(full: Path, tmp_path: Path) -> tuple[str, str]:
    """12 training items (tags only), 4 held-out items with gt/, sharing media by absolute uri."""
    rows = [json.loads(line) for line in (full / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        row["uri"] = str(full / row["uri"])
    train, held = rows[:12], rows[12:]
    train_dir, held_dir = tmp_path / "collection", tmp_path / "holdout"
    for folder, part in ((train_dir, train), (held_dir, held)):
        folder.mkdir()
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        (folder / "classes.json").write_text((full / "classes.json").read_text())
    (held_dir / "gt").mkdir()
    for row in held:
        (held_dir / "gt" / f"{row['id']}.png").write_bytes(
            (full / "gt" / f"{row['id']}.png").read_bytes()
        )
    return str(train_dir), str(held_dir)
