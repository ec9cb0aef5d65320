"""The summary every command ends with (pipeline/summary.py) and the global `--json` flag: no Ray."""

import json
import re
import subprocess
import sys

import pytest

from pipeline import cli, summary
from pipeline.summary import Result, render

SEGMENTER = {
    "epochs": 3,
    "mlflow_run_id": "abc",
    "samples_per_s": 12.3456,
    "val_miou": 0.61437,
    "model_uri": "out/model.pt",
    "version": "2",
    "wall_s": 84.25,
}
PSEUDO_LABEL = {
    "out": "labels",
    "counts": {"rows": 5, "status": {"labelled": 3, "failed": 2}, "failed_reasons": {}},
    "wall_seconds": 24.13,
}


def _rows(table: str) -> dict[str, str]:
    """label -> value of a rendered table (two or more spaces between them; title and rule off)."""
    rows = {}
    for line in table.splitlines()[2:]:
        name, _, value = (
            re.split(r"(\s{2,})", line.strip(), maxsplit=1)
            if "  " in line.strip()
            else (line.strip(), "", "")
        )
        rows[name] = value
    return rows


def test_fractions_become_percent_with_the_unit_in_the_label():
    table = render("train-segmenter", SEGMENTER)
    assert table.splitlines()[0] == "summary: train-segmenter"
    assert set(table.splitlines()[1]) == {"-"}
    rows = _rows(table)
    assert rows["val mIoU (%)"] == "61.4"
    assert rows["wall time (s)"] == "84.2"  # seconds: one decimal
    assert rows["samples/s"] == "12.35"  # other floats: 4 significant digits
    assert rows["epochs"] == "3" and rows["model"] == "out/model.pt"
    assert table.splitlines()[2].startswith("val mIoU (%)"), "metrics come first"


def test_json_keeps_the_keys_and_uses_the_same_percent():
    parsed = json.loads(render("train-segmenter", SEGMENTER, as_json=True))
    assert list(parsed) == list(SEGMENTER)
    assert parsed["val_miou"] == 61.4 and parsed["epochs"] == 3


def test_metrics_already_in_percent_are_not_converted_again():
    result = {"image_miou": 51.8, "coverage": 45.2, "status_counts": {"labelled": 3}}
    assert json.loads(render("evaluate", result, as_json=True)) == result
    rows = _rows(render("evaluate", result))
    assert rows["image mIoU (%)"] == "51.8" and rows["coverage (%)"] == "45.2"


def test_classifier_map_and_per_class_ap_in_percent():
    result = {"map": 0.8125, "per_class_ap": {"ball": 0.9, "box": 0.725}, "skipped": {}}
    rows = _rows(render("train-classifier", result))
    assert rows["train mAP (%)"] == "81.2"
    assert rows["train AP per class (%)"] == "ball 90.0, box 72.5"
    assert rows["skipped"] == "none"
    data_keys = render("train-classifier", {"per_class_ap": {"potted_plant": 0.5}})
    assert _rows(data_keys)["train AP per class (%)"] == "potted_plant 50.0"  # data, not renamed
    parsed = json.loads(render("train-classifier", result, as_json=True))
    assert parsed["per_class_ap"] == {"ball": 90.0, "box": 72.5}


def test_nested_dicts_are_indented_and_short_ones_inline():
    table = render("pseudo-label", PSEUDO_LABEL)
    lines = table.splitlines()
    assert lines[2].split() == ["out", "labels"]
    assert lines[3] == "counts"
    assert re.fullmatch(r"  rows\s+5", lines[4])
    assert re.fullmatch(r"  status\s+labelled 3, failed 2", lines[5])
    assert re.fullmatch(r"  failed reasons\s+none", lines[6])
    assert re.fullmatch(r"wall time \(s\)\s+24\.1", lines[7])
    # one value column: every value starts at the same offset
    starts = {
        len(re.match(r"\s*\S+(?: \S+)*\s{2,}", line).group())
        for line in lines[2:]
        if line != "counts"
    }
    assert len(starts) == 1
    assert json.loads(render("pseudo-label", PSEUDO_LABEL, as_json=True)) == PSEUDO_LABEL


def test_long_nested_dicts_become_a_count_and_stay_whole_in_json():
    many = {f"class{i}": 0.5 for i in range(30)}
    rows = _rows(render("train-classifier", {"per_class_ap": many}))
    assert rows["train AP per class (%)"] == "30 entries (all of them in --json)"
    assert (
        len(json.loads(render("train-classifier", {"per_class_ap": many}, True))["per_class_ap"])
        == 30
    )


def test_values_none_nan_bool_and_lists():
    assert summary.format_value(None) == "-"
    assert summary.format_value(float("nan"), percent=True) == "-"
    assert summary.format_value(True) == "yes"
    assert summary.format_value([]) == "none" and summary.format_value(["a", "b"]) == "a, b"
    assert summary.format_value(51.84, percent=True) == "51.8"
    parsed = json.loads(
        render("train-segmenter", {"val_miou": float("nan"), "x": float("inf")}, True)
    )
    assert parsed == {"val_miou": None, "x": None}  # strict JSON, no NaN


def test_result_details_go_above_the_table_and_not_into_json():
    result = Result(
        {"videos": {"v1": {"j": 50.0}}, "image_miou": 40.0}, details="video  J %\nv1    50.0"
    )
    text = render("evaluate", result)
    assert text.startswith("video  J %\nv1    50.0\n\nsummary: evaluate")
    assert _rows(text.split("\n\n", 1)[1])["videos"] == "1 (table above; all in --json)"
    per_class = render("evaluate", {"per_class_iou": {"a": 1.0, "b": 2.0, "c": 3.0}})
    assert _rows(per_class)["IoU per class"] == "3 classes (table above; all in --json)"
    assert json.loads(render("evaluate", result, as_json=True)) == result.values


def test_every_converted_fraction_is_labelled_percent():
    for keys in summary.FRACTIONS.values():
        assert set(keys) <= summary.PERCENT


def test_summary_module_imports_no_torch_ray_or_mlflow():
    code = (
        "import sys, pipeline.summary; "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr


# ------------------------------------------------------------------------------ --json parsing


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "evaluate", "--labels", "L", "--collection", "C"],
        ["evaluate", "--labels", "L", "--collection", "C", "--json"],
        ["-q", "--json", "report", "--labels", "L"],
    ],
)
def test_json_flag_before_or_after_the_command(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.json is True


def test_json_flag_defaults_off_and_is_in_the_help():
    assert cli.build_parser().parse_args(["report", "--labels", "L"]).json is False
    help_text = cli.build_parser().format_help()
    assert "--json" in help_text and "percent" in help_text
    for flag in ("--verbose", "--log-level", "--quiet", "--version"):
        assert flag in help_text


def test_main_prints_the_table_or_json(monkeypatch, capsys):
    def fake(args):
        return dict(SEGMENTER)

    commands = cli.all_commands()
    handler, add_arguments, help_text = commands["train-segmenter"]
    monkeypatch.setattr(
        cli,
        "all_commands",
        lambda: {**commands, "train-segmenter": (fake, add_arguments, help_text)},
    )
    argv = ["-q", "train-segmenter", "--labels", "L", "--out", "O"]
    assert cli.main(argv) == 0
    assert "val mIoU (%)" in capsys.readouterr().out
    assert cli.main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["val_miou"] == 61.4


def test_config_prints_yaml_and_with_json_the_same_config_as_json(capsys):
    assert cli.main(["config", "--section", "predict"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("predict:") and "summary:" not in text  # its output is the config itself
    assert cli.main(["--json", "config", "--section", "predict"]) == 0
    assert "long_side" in json.loads(capsys.readouterr().out)["predict"]


def test_retrain_decision_renders_nested_dicts_and_its_finish_time():
    decision = {
        "run": "20260101T000000Z-abc123",
        "action": "promoted",
        "promoted": True,
        "labelled": {"rows": 4, "status": {"labelled": 4}, "failed_reasons": {}},
        "candidate": {"version": "3", "model_uri": "work/runs/r/model/model.pt", "score": 55.25},
        "champion_before": None,
        "seconds": 12.34,
        "finished": 1767225600.0,
    }
    rows = _rows(render("retrain", decision))
    assert rows["promoted"] == "yes" and rows["champion before"] == "-"
    assert rows["candidate"] == "version 3, model work/runs/r/model/model.pt, score 55.2%"
    assert rows["time (s)"] == "12.3"
    assert rows["finished"] == "2026-01-01 00:00:00 UTC"
    assert json.loads(render("retrain", decision, as_json=True)) == decision
    assert (
        summary.format_value(123456.7) == "123457" and summary.format_value(0.012345) == "0.01235"
    )
