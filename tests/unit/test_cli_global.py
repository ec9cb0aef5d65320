"""`webseg --version`, `--help`, the global logging flags and `webseg config`, run as a user runs
them: as a subprocess, checking what reaches stdout and stderr."""

import re
import subprocess
import sys
from importlib import metadata

import yaml

from pipeline.cli import WORKFLOW


def _webseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_version_comes_from_the_package_metadata():
    result = _webseg("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"webseg {metadata.version('webseg')}"


def test_help_says_what_it_does_and_lists_commands_in_workflow_order():
    result = _webseg("--help")
    assert result.returncode == 0
    assert "pixel-level segmentation labels" in result.stdout
    listed = re.findall(r"^    ([a-z-]+)\s", result.stdout, flags=re.MULTILINE)
    assert listed[: len(WORKFLOW)] == list(WORKFLOW)
    expected = ["train-classifier", "pseudo-label", "evaluate", "report", "train-segmenter"]
    positions = [listed.index(name) for name in [*expected, "predict", "retrain", "demo"]]
    assert positions == sorted(positions)


def test_global_flags_work_before_and_after_the_command(tmp_path):
    for args in (["--log-level", "debug", "config"], ["config", "--log-level", "DEBUG", "-q"]):
        assert _webseg(*args).returncode == 0, args
    bad = _webseg("--log-level", "loud", "config")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_quiet_hides_webseg_info_lines_and_default_shows_them(tmp_path):
    (tmp_path / "dir" / "horse").mkdir(parents=True)
    _tiny_png(tmp_path / "dir" / "horse" / "a.png")
    out = tmp_path / "dir" / "manifest.jsonl"
    args = ["manifest", str(tmp_path / "dir"), "--out", str(out), "--overwrite"]
    loud = _webseg("--log-level", "debug", *args)
    quiet = _webseg("--quiet", *args)
    assert loud.returncode == quiet.returncode == 0
    assert "manifest: started" in loud.stderr
    assert "manifest: started" not in quiet.stderr
    assert re.search(r"^manifest\s+\S+manifest\.jsonl$", quiet.stdout, flags=re.MULTILINE)  # result


def test_config_prints_the_effective_section_with_comments(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pseudo_label:\n  video:\n    mode: crf\n")
    result = _webseg("config", "--config", str(config), "--section", "pseudo-label")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pseudo_label:")
    parsed = yaml.safe_load(result.stdout)
    assert list(parsed) == ["pseudo_label"]
    assert parsed["pseudo_label"]["video"]["mode"] == "crf"
    assert re.search(r"^\s+mode: crf  # .+", result.stdout, flags=re.MULTILINE)


def test_config_names_the_sections_for_an_unknown_one():
    result = _webseg("config", "--section", "nope")
    assert result.returncode == 1
    assert "unknown config section 'nope'" in result.stderr and "pseudo_label" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _tiny_png(path):
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.full((8, 8, 3), 127, np.uint8))
