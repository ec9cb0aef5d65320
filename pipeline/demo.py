"""`webseg demo`: the whole job on a generated sample collection, with a local Ray and MLflow store.

generate collection -> train-classifier -> pseudo-label -> evaluate -> report

Every step's MLflow run goes to OUT/mlflow.db; the classifier is registered there as
`webseg-demo-classifier` (alias `candidate`). It ends with the summary table every command ends
with (scores in percent, where everything went), whose last row is the `mlflow ui` command.
"""

from __future__ import annotations

import json
import os

from pipeline import sample_data, storage
from pipeline.evaluate.score import evaluate_labels
from pipeline.evaluate.summary import format_breakdown
from pipeline.progress import stage
from pipeline.report.build import build_report
from pipeline.settings import load_settings
from pipeline.summary import Result
from pipeline.tracking.runs import log_evaluation

DEMO_EPOCHS = 12  # the synthetic shapes are easy; a dozen epochs gives usable CAMs on a laptop CPU
DEMO_MODEL_NAME = "webseg-demo-classifier"  # registered model in the demo's MLflow store


def run_demo(out: str, config: str | None, epochs: int | None, ray_address: str | None) -> Result:
    # deferred: loads MLflow only when a run is logged or a model looked up
    from pipeline.cluster.dataflow import run_pseudo_label
    from pipeline.cluster.runtime import init_ray
    from pipeline.tracking.registry import register_classifier
    from pipeline.train.classifier import train_classifier

    out = os.path.abspath(out)
    paths = {name: os.path.join(out, name) for name in ("collection", "labels")}
    paths["model"] = os.path.join(out, "model", "classifier.pt")
    tracking = f"sqlite:///{os.path.join(out, 'mlflow.db')}"
    cfg = load_settings(
        config, {"classifier.epochs": epochs or DEMO_EPOCHS, "classifier.tracking_uri": tracking}
    )
    timings = {}
    with stage("generate") as step:
        sample_data.generate(paths["collection"], photos=True)
    timings["generate"] = step.seconds()
    init_ray(ray_address)
    with stage("train-classifier") as step:
        trained = train_classifier(paths["collection"], paths["model"], cfg.classifier)
        registered = register_classifier(
            tracking, trained["mlflow_run_id"], paths["model"], DEMO_MODEL_NAME
        )
    timings["train-classifier"] = step.seconds()
    with stage("pseudo-label") as step:
        # the demo retrains its classifier each time, so its labels always start over
        run_pseudo_label(
            paths["collection"], paths["model"], paths["labels"], cfg.pseudo_label,
            overwrite=True, tracking_uri=tracking,
        )  # fmt: skip
    timings["pseudo-label"] = step.seconds()
    result = evaluate_labels(paths["labels"], paths["collection"])
    log_evaluation(paths["labels"], paths["collection"], result)
    storage.write_text(os.path.join(out, "evaluation.json"), json.dumps(result, indent=2))
    report = build_report(paths["labels"], paths["collection"])
    scores = ("image_miou", "image_miou_confident", "coverage", "frame_miou", "mean_video_j")
    values = {
        **{key: result[key] for key in scores},
        "status_counts": result["status_counts"],
        "collection": paths["collection"],
        "classifier": paths["model"],
        "registered_model": f"{registered['model_uri']} (version {registered['version']})",
        "labels": paths["labels"],  # manifest.parquet, masks/, run.json
        "evaluation": os.path.join(out, "evaluation.json"),
        "report": report,
        "seconds": {step: round(seconds, 1) for step, seconds in timings.items()},
        "tracking_uri": tracking,  # runs of train-classifier, pseudo-label (+ evaluate's scores)
        "mlflow_ui": f"mlflow ui --backend-store-uri {tracking}",
    }
    return Result(values, details=format_breakdown(result))
