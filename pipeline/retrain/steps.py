"""The model steps of a retrain run: the Steps protocol and MlflowSteps, the real implementation.

run_retrain (pipeline/retrain/run.py) only decides; these steps pseudo-label, train, score on the
held-out collection and move the MLflow registry alias.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from pipeline.config import from_dict
from pipeline.evaluate.score import evaluate_labels
from pipeline.label_config import PseudoLabelConfig
from pipeline.settings import PredictConfig, RetrainConfig
from pipeline.train.config import SegmenterTrainConfig


class Steps(Protocol):
    """What a retrain run does with models; MlflowSteps is the real one, tests pass fakes."""

    def label(self, collection_uri: str, labels_uri: str) -> dict: ...
    def train(self, labels_uri: str, out_uri: str, init_from: str | None) -> dict: ...
    def score(self, model_uri: str, holdout_uri: str, out_uri: str) -> float: ...
    def champion(self) -> dict | None: ...  # {"version", "model_uri", "checkpoint_uri", "score"}
    def promote(self, version: str) -> None: ...
    def record(self, decision: dict) -> None: ...


class MlflowSteps:
    """The real steps: pseudo-label, train-segmenter, predict + evaluate, MLflow registry alias."""

    # each method imports its heavy modules (Ray, torch, MLflow) when it runs, deliberately

    def __init__(
        self,
        holdout_uri: str,
        classifier: str | None,
        sections: dict[str, Any],
        retrain: RetrainConfig,
        work_uri: str | None = None,
    ) -> None:
        """work_uri: the run's --work; the MLflow store (pipeline.tracking.runs's rule) is
        segmenter.tracking_uri, else MLFLOW_TRACKING_URI, else WORK/mlflow.db."""
        from pipeline.tracking.runs import tracking_uri_for  # deferred, as every MLflow import here

        self.holdout_uri, self.classifier, self.retrain = holdout_uri, classifier, retrain
        self.label_cfg = from_dict(PseudoLabelConfig, sections.get("pseudo_label"), "pseudo_label.")
        self.train_cfg = from_dict(SegmenterTrainConfig, sections.get("segmenter"), "segmenter.")
        self.tracking_uri = tracking_uri_for(
            (sections.get("segmenter") or {}).get("tracking_uri"), work_uri
        )
        self.predict_cfg = from_dict(
            PredictConfig,
            {**(sections.get("predict") or {}), "tracking_uri": self.tracking_uri},
            "predict.",
        )
        self.name = self.train_cfg.registered_model_name

    def _client(self):
        # deferred: loads MLflow only when a run is logged or a model looked up
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    def label(self, collection_uri: str, labels_uri: str) -> dict:
        # deferred: loads Ray only for commands that run on it
        from pipeline.cluster.dataflow import run_pseudo_label

        return run_pseudo_label(
            collection_uri, self.classifier, labels_uri, self.label_cfg,
            tracking_uri=self.tracking_uri,
        )  # fmt: skip

    def train(self, labels_uri: str, out_uri: str, init_from: str | None) -> dict:
        # deferred: loads torch only where a model is built or run
        from pipeline.checkpoint import model_file_uri
        from pipeline.train.segmenter import train_segmenter

        cfg = replace(
            self.train_cfg,
            tracking_uri=self.tracking_uri,
            init_from=init_from or self.train_cfg.init_from,
        )
        result = train_segmenter(labels_uri, out_uri, cfg)
        checkpoint_uri = model_file_uri(result["model_uri"])
        self._client().set_model_version_tag(
            self.name, str(result["version"]), "checkpoint_uri", checkpoint_uri
        )
        return {
            "version": str(result["version"]),
            "model_uri": checkpoint_uri,
            "mlflow_run_id": result.get("mlflow_run_id"),
            "init_from": init_from,
        }

    def score(self, model_uri: str, holdout_uri: str, out_uri: str) -> float:
        # deferred: loads torch/Ray/MLflow only for the commands that use them
        from pipeline.predict_run import run_predict

        run_predict(model_uri, holdout_uri, out_uri, self.predict_cfg)
        value = evaluate_labels(out_uri, holdout_uri).get(self.retrain.metric)
        return float("nan") if value is None else float(value)

    def champion(self) -> dict | None:
        # deferred: loads MLflow only when a run is logged or a model looked up
        from mlflow.exceptions import MlflowException

        try:
            version = self._client().get_model_version_by_alias(self.name, self.retrain.alias)
        except MlflowException:
            return None
        tags = version.tags
        same_holdout = tags.get("holdout_uri") == self.holdout_uri
        score = tags.get(f"holdout.{self.retrain.metric}") if same_holdout else None
        return {
            "version": version.version,
            "model_uri": f"models:/{self.name}/{version.version}",
            "checkpoint_uri": tags.get("checkpoint_uri"),
            "score": float(score) if score not in (None, "") else None,
        }

    def promote(self, version: str) -> None:
        self._client().set_registered_model_alias(self.name, self.retrain.alias, version)

    def record(self, decision: dict) -> None:
        client, candidate = self._client(), decision.get("candidate") or {}
        tags = {
            "retrain.run": decision["run"],
            "retrain.decision": decision["action"],
            "retrain.reason": decision["reason"][:500],
            "holdout_uri": self.holdout_uri,
            f"holdout.{self.retrain.metric}": str(candidate.get("score")),
        }
        for key, value in tags.items():
            client.set_model_version_tag(self.name, candidate["version"], key, value)
            if candidate.get("mlflow_run_id"):
                client.set_tag(candidate["mlflow_run_id"], key, value)
        champion = decision.get("champion_before") or {}
        if champion.get("score") is not None:  # cache the champion's score for later runs
            client.set_model_version_tag(
                self.name, champion["version"], "holdout_uri", self.holdout_uri
            )
            client.set_model_version_tag(
                self.name,
                champion["version"],
                f"holdout.{self.retrain.metric}",
                str(champion["score"]),
            )
