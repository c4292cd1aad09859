"""Hyperparameter search as pipeline runs (`suite-pipeline tune`), with Optuna.

Each trial is a normal, cached pipeline run of the configuration with the
trial's values set on the keys of `tuning.search_space`, without the Pusher:
the data components are cache hits after the first trial, and a trial's run
record carries its parameters under `tuning`. The study lives in an Optuna
journal, `<pipeline root>/tuning/<study>/journal.log`, so a killed search
resumes: finished trials are kept and the trial that was cut off runs again
with the same parameters (and its Trainer resumes from its last epoch).

    suite-pipeline tune --config tfx_pipeline/configs/banking77.yaml --trials 12
    suite-pipeline tune --config ... --summary            # the table, no new trials
    suite-pipeline tune --config ... --write-best best.yaml

Example: the search space of a configuration as Optuna distributions.

>>> from tfx_pipeline.config import SearchParameter
>>> space = {"training.learning_rate": SearchParameter(low=1e-5, high=1e-3, log=True),
...          "training.label_smoothing": SearchParameter(choices=(0.0, 0.1))}
>>> {key: type(d).__name__ for key, d in distributions(space).items()}
{'training.learning_rate': 'FloatDistribution', 'training.label_smoothing': 'CategoricalDistribution'}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import optuna
import optuna.storages.journal  # A subpackage `import optuna` loads but does not name.
import yaml

from tfx_pipeline import storage
from tfx_pipeline.config import ConfigError, PipelineConfig, SearchParameter, set_dotted
from tfx_pipeline.dsl import Pipeline, PipelineError

log = logging.getLogger("tfx_pipeline.tuning")


def distributions(space: Mapping[str, SearchParameter]) -> dict[str, optuna.distributions.BaseDistribution]:
    result: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, parameter in space.items():
        if parameter.choices:
            result[key] = optuna.distributions.CategoricalDistribution(list(parameter.choices))
        elif parameter.low is None or parameter.high is None:
            raise ConfigError(f"tuning.search_space.{key}: give low and high, or choices")
        elif parameter.integer:
            result[key] = optuna.distributions.IntDistribution(int(parameter.low), int(parameter.high),
                                                               log=parameter.log)
        else:
            result[key] = optuna.distributions.FloatDistribution(parameter.low, parameter.high, log=parameter.log)
    return result


@dataclasses.dataclass
class Tuner:
    """Runs `config.tuning.trials` trials of `config`'s pipeline, resumably.

    `config_path` and `overrides` are what `run` would load: each trial loads
    them again with its own values set, so it is checked like any configuration.
    """

    config_path: Path
    overrides: Mapping[str, Any]
    config: PipelineConfig
    study_name: str = "default"

    def __post_init__(self):
        if not self.config.tuning.search_space:
            raise ConfigError(f"{self.config_path}: tuning.search_space is empty; nothing to tune")
        if not storage.is_local(self.config.root):
            raise ConfigError("tune keeps its study beside the pipeline root, which must be a local path here")
        self.directory = Path(self.config.root) / "tuning" / self.study_name
        self.space = distributions(self.config.tuning.search_space)
        self.metric = self.config.tuning.metric or self.config.evaluation.thresholds.metric

    def study(self) -> optuna.Study:
        self.directory.mkdir(parents=True, exist_ok=True)
        journal = optuna.storages.journal.JournalFileBackend(str(self.directory / "journal.log"))
        return optuna.create_study(
            study_name=self.study_name, storage=optuna.storages.JournalStorage(journal), direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=self.config.tuning.seed), load_if_exists=True)

    def run(self, trials: int | None = None, time_budget_minutes: float | None = None) -> optuna.Study:
        trials = self.config.tuning.trials if trials is None else trials
        budget = self.config.tuning.time_budget_minutes if time_budget_minutes is None else time_budget_minutes
        study = self.study()
        self._requeue_interrupted(study)
        deadline = time.monotonic() + budget * 60 if budget else None
        while _finished(study) < trials and (deadline is None or time.monotonic() < deadline):
            trial = study.ask(self.space)
            try:
                value = self._run_trial(trial)
            except Exception as error:  # A failing trial is recorded; the search goes on.
                log.error("trial %d failed: %s", trial.number, error)
                trial.set_user_attr("error", f"{type(error).__name__}: {error}")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                if isinstance(error, ConfigError):
                    raise
                continue
            study.tell(trial, value)
            log.info("trial %d: %s = %.4f with %s", trial.number, self.metric, value, trial.params)
        self.write_summary(study)
        return study

    def _requeue_interrupted(self, study: optuna.Study) -> None:
        """A trial left running by a killed search is closed as failed and queued again, same values."""
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            log.info("trial %d was interrupted; running its parameters again", trial.number)
            study._storage.set_trial_user_attr(trial._trial_id, "error", "interrupted; queued again")
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"resumes_trial": trial.number})

    def trial_config(self, params: Mapping[str, Any]) -> PipelineConfig:
        return PipelineConfig.from_file(self.config_path, {**self.overrides, **params}).replace(
            beam_args=self.config.beam_args)

    def _run_trial(self, trial: optuna.Trial) -> float:
        from tfx_pipeline.pipeline import create_pipeline
        from tfx_pipeline.runner import LocalDagRunner

        config = self.trial_config(trial.params)
        full = create_pipeline(config)
        # Tuning compares candidates; pushing is the normal run's decision.
        pipeline = Pipeline(full.name, full.root, [c for c in full.components if c.id != "Pusher"], full.beam_args)
        record = LocalDagRunner(local_cache=config.local_cache or None).run(pipeline, run_metadata={
            "config_path": str(self.config_path), "config": config.to_dict(),
            "tuning": {"study": self.study_name, "trial": trial.number, "params": dict(trial.params)}})
        trial.set_user_attr("run_id", record["run_id"])
        trial.set_user_attr("metrics", record.get("metrics", {}))
        if self.metric not in record.get("metrics", {}):
            raise PipelineError(f"the run's metrics have no {self.metric!r}: {sorted(record.get('metrics', {}))}")
        return float(record["metrics"][self.metric])

    def summary_rows(self, study: optuna.Study) -> list[dict[str, Any]]:
        rows = []
        for trial in study.get_trials(deepcopy=False):
            duration = (trial.datetime_complete - trial.datetime_start).total_seconds() if (
                trial.datetime_complete and trial.datetime_start) else None
            rows.append({"trial": trial.number, "state": trial.state.name, self.metric: trial.value,
                         "params": trial.params, "seconds": duration, "run_id": trial.user_attrs.get("run_id"),
                         "metrics": trial.user_attrs.get("metrics", {}), "error": trial.user_attrs.get("error")})
        return rows

    def write_summary(self, study: optuna.Study) -> str:
        rows = self.summary_rows(study)
        (self.directory / "summary.json").write_text(json.dumps(rows, indent=2, default=str))
        table = format_summary(rows, self.metric, list(self.space))
        (self.directory / "summary.md").write_text(table + "\n")
        return table

    def best_params(self, study: optuna.Study) -> dict[str, Any]:
        if not _finished(study):
            raise PipelineError(f"study {self.study_name!r} has no finished trial yet")
        return dict(study.best_trial.params)

    def write_best(self, study: optuna.Study, path: Path) -> dict[str, Any]:
        """The configuration file with the best trial's values set, for `suite-pipeline run`."""
        params = self.best_params(study)
        data = yaml.safe_load(self.config_path.read_text())
        for key, value in {**self.overrides, **params}.items():
            set_dotted(data, key, value)
        header = (f"# {self.config_path} with the best trial ({self.metric} "
                  f"{study.best_value:.4f}) of study {self.study_name!r}, written by suite-pipeline tune.\n")
        path.write_text(header + yaml.safe_dump(data, sort_keys=False))
        PipelineConfig.from_file(path)  # What was written loads.
        return params


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def format_summary(rows: list[dict[str, Any]], metric: str, keys: list[str]) -> str:
    """A Markdown table of the trials, best first."""
    def value(row):
        return row[metric] if row[metric] is not None else float("-inf")

    header = ["trial", "state", metric, *keys, "seconds", "run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(rows, key=value, reverse=True):
        cells = [str(row["trial"]), row["state"], "" if row[metric] is None else f"{row[metric]:.4f}",
                 *[_cell(row["params"].get(key)) for key in keys],
                 "" if row["seconds"] is None else f"{row['seconds']:.0f}", row["run_id"] or (row["error"] or "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
