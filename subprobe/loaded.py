"""A finished run directory loaded back as a working probe: ``subprobe.load_run(RUN_DIR)``.

The model is rebuilt with the code paths of the run itself: :func:`~subprobe.models.loading.load_encoder`,
:func:`~subprobe.models.reset.apply_setting` (the seeded draw of a reset run is repeated exactly),
:func:`~subprobe.probes.registry.build_probe`, then the saved mask logits, head and MLP-1 adapter
are copied in. Predictions go through :func:`~subprobe.training.evaluate.predict_dataset` with the
hard mask, so a run's dev file predicted here scores exactly what ``metrics.json`` reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset, encode_dataset
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError
from subprobe.runs import RunDir

#: Files of a run directory that loading needs (besides the per-probe weight files).
NEEDED = RunDir.NEEDED_TO_LOAD


@dataclass
class LoadedRun:
    """A trained probe ready to tag: ``.predict(sentences)``, ``.metrics``, ``.subnetwork``, ``.config``."""

    run_dir: Path
    config: ProbeConfig
    metrics: dict
    vocabs: dict[str, LabelVocab]
    task: object  # subprobe.tasks.base.Task
    model: torch.nn.Module  # subprobe.probes.base.ProbeModel, in eval mode
    tokenizer: object
    subnetwork: object | None  # subprobe.Subnetwork for subnetwork runs
    max_length: int
    pad_id: int

    @property
    def mask_mode(self) -> str | None:
        """``hard`` for subnetwork runs (the binarised mask that ``metrics.json``'s dev/test use)."""
        return "hard" if self.subnetwork is not None else None

    def encode(self, sentences: list[Sentence], name: str = "input") -> Dataset:
        """Tokenise ``sentences`` as the run did (same tokenizer, limit and long-sentence policy)."""
        return encode_dataset(name, sentences, self.tokenizer, self.max_length, self.config.long_sentences)

    def predict_encoded(self, dataset: Dataset) -> dict[int, dict[str, np.ndarray]]:
        """Label ids per sentence index (see :func:`subprobe.training.evaluate.predict_dataset`)."""
        from subprobe.probes.cached import CachedFeatures
        from subprobe.training.evaluate import predict_dataset

        if isinstance(self.model.features, CachedFeatures):
            self.model.features.fill(dataset, self.config.word_pooling, self.pad_id)
        _label_placeholders(self.task, dataset)
        return predict_dataset(
            self.model,
            self.task,
            dataset,
            pooling=self.config.word_pooling,
            pad_id=self.pad_id,
            mask_mode=self.mask_mode,
        )

    def score(self, dataset: Dataset, predictions) -> dict[str, float]:
        """The run's metrics of ``predictions`` against the gold labels attached to ``dataset``."""
        return self.task.metrics(dataset, predictions, self.vocabs)

    def predict(self, sentences) -> list[Sentence]:
        """Tag ``sentences`` (strings split on whitespace, lists of words or :class:`Sentence` records).

        Returns one new :class:`Sentence` per input with the predicted field filled: ``upos``,
        ``heads`` + ``deprels`` (heads 1-based, 0 = root) or ``ner``. A sentence longer than the
        model limit is returned without predictions (fields ``None``).
        """
        records = [_as_sentence(s) for s in sentences]
        if not records:
            return []
        dataset = self.encode([dataclasses.replace(s, upos=None, heads=None, deprels=None, ner=None) for s in records])
        predictions = self.predict_encoded(dataset)
        return [self._filled(s, predictions.get(i)) for i, s in enumerate(records)]

    def _filled(self, sentence: Sentence, predicted: dict | None) -> Sentence:
        out = dataclasses.replace(sentence, upos=None, heads=None, deprels=None, ner=None)
        if predicted is None:
            return out
        field = self.task.field
        labels = self.vocabs[field].labels
        names = [labels[int(i)] for i in predicted[field]]
        if self.task.name == "dep":
            return dataclasses.replace(out, heads=[int(h) for h in predicted["heads"]], deprels=names)
        return dataclasses.replace(out, **{field: names})


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a finished run directory (any probe whose weights the directory holds; see the module doc)."""
    from subprobe.models.loading import load_encoder
    from subprobe.models.reset import apply_setting
    from subprobe.probes.registry import build_probe
    from subprobe.tasks.registry import get_task

    run = RunDir(run_dir)
    run_dir = run.path
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory; give the --out directory of a finished run")
    missing = run.missing_for_load()
    if missing:
        hint = (
            f"finish it first (subprobe probe --resume {run_dir})"
            if run.has_config
            else "give the --out directory of a finished run"
        )
        raise ConfigError(f"{run_dir}: not a finished subprobe run (no {', '.join(missing)}); {hint}")
    cfg = run.read_config().resolved()
    if cfg.probe == "finetune":
        raise ConfigError(
            f"{run_dir}: a finetune run does not save its fine-tuned encoder weights, so it cannot be loaded or "
            "used to predict; use a subnetwork, mlp or linear run"
        )
    metrics = run.read_metrics()
    vocabs = {k: LabelVocab(tuple(v)) for k, v in run.read_vocab().items()}
    task = get_task(cfg.task)
    task.configure(cfg)
    if "ner_scheme" in metrics:  # NER scores use the training file's tag scheme
        task.train_scheme = metrics["ner_scheme"]

    encoder, tokenizer = load_encoder(cfg.model)
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), encoder.config.max_position_embeddings)
    apply_setting(encoder, cfg.setting, cfg.init, cfg.reset_seed)
    head = task.build_head(encoder.config.hidden_size, vocabs, **task.head_options(cfg))
    _load_weights(head, run.read_head(), run.head_path, cfg)
    built = build_probe(cfg, encoder, head)
    subnetwork = None
    if built.masked:
        subnetwork = run.read_masks()
        saved = {e.name: e.log_alpha for e in subnetwork.entries}
        if set(saved) != {m.name for m in built.masked}:
            raise ConfigError(f"{run.masks_path}: its matrices do not match model {cfg.model}")
        for m in built.masked:
            if tuple(saved[m.name].shape) != tuple(m.log_alpha.shape):
                raise ConfigError(
                    f"{run.masks_path}: the mask of {m.name} has shape {tuple(saved[m.name].shape)} but "
                    f"{cfg.model} with --granularity {cfg.granularity} needs {tuple(m.log_alpha.shape)}; "
                    f"the files of {run_dir} do not belong together: train the run again"
                )
        with torch.no_grad():
            for m in built.masked:
                m.log_alpha.copy_(saved[m.name])
    if built.model.adapter is not None:
        if not run.adapter_path.is_file():
            raise ConfigError(
                f"{run.adapter_path}: missing (runs made before subprobe saved MLP-1 weights); train the run again"
            )
        _load_weights(built.model.adapter, run.read_adapter(), run.adapter_path, cfg)
    built.model.eval()
    for p in built.model.parameters():
        p.requires_grad_(False)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return LoadedRun(run_dir, cfg, metrics, vocabs, task, built.model, tokenizer, subnetwork, max_length, pad_id)


def _load_weights(module: torch.nn.Module, state: dict, path: Path, cfg: ProbeConfig) -> None:
    """Copy saved weights into ``module``; names or shapes that differ (a head for another vocabulary or model,
    files of two runs mixed) are one ConfigError naming the file."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc).splitlines()[0])
        raise ConfigError(
            f"{path}: does not fit the probe that {RunDir.CONFIG} and {RunDir.VOCAB} describe (model {cfg.model}; "
            f"{detail[:160]}); the files of {path.parent} do not belong together: train the run again"
        ) from None


def _as_sentence(item) -> Sentence:
    if isinstance(item, Sentence):
        return item
    if isinstance(item, str):
        words = item.split()
    else:
        words = [str(w) for w in item]
    if not words:
        raise ConfigError("predict: an input sentence has no words; drop empty sentences")
    return Sentence(words=words)


def _label_placeholders(task, dataset: Dataset) -> None:
    """Zero labels for sentences read without gold ones: the dependency task's predict step also scores
    relations on the gold heads (an unused by-product here), which needs a value in every slot."""
    for e in dataset.encoded:
        if task.name == "dep" and "heads" not in e.labels:
            e.labels["heads"] = np.zeros(e.n_words, dtype=np.int64)
            e.labels[task.field] = np.zeros(e.n_words, dtype=np.int64)
