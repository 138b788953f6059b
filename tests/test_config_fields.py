"""Settings carry their own choices and scope; the CLI, resume checks and store keys read them."""

from __future__ import annotations

import typing

from subprobe.config import ProbeConfig, scoped_settings, settings_where
from subprobe.experiments.store import NON_RESULT_FIELDS
from subprobe.resume import _NOT_COMPARED, RESUME_OVERRIDES


def _choices(name: str) -> tuple:
    kind = typing.get_type_hints(ProbeConfig)[name]
    args = typing.get_args(kind)
    if typing.get_origin(kind) is not typing.Literal:  # Optional[Literal[...]]
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    return args


def test_literal_choices_agree_with_the_registries():
    from subprobe.models.reset import INITS, SETTINGS
    from subprobe.probes.registry import PROBE_NAMES
    from subprobe.tasks.registry import TASK_NAMES

    assert _choices("task") == TASK_NAMES
    assert _choices("probe") == PROBE_NAMES
    assert _choices("setting") == SETTINGS
    assert _choices("init") == INITS
    assert _choices("precision") == ("fp32", "bf16")


def test_scopes():
    assert scoped_settings("tasks") == {
        "arc_dim": ("dep",), "label_dim": ("dep",), "decoder": ("dep",), "deprel": ("dep",),
        "ner_scheme": ("ner",), "keep_single_token": ("ner",),
    }
    assert scoped_settings("probes") == {
        "rank": ("mlp",), "cache_features": ("mlp", "linear"), "finetune_lr": ("finetune",),
        "granularity": ("subnetwork",), "layout": ("subnetwork",), "penalty": ("subnetwork",),
        "lambda_max": ("subnetwork",), "target_density": ("subnetwork",), "random_mask_like": ("subnetwork",),
        "complement_of": ("subnetwork",), "mask_seed": ("subnetwork",), "target_modules": ("subnetwork",),
        "allow_partial": ("subnetwork",), "mask_lr": ("subnetwork",), "multiplier_lr": ("subnetwork",),
    }


def test_store_key_and_resume_lists_come_from_the_fields():
    assert set(NON_RESULT_FIELDS) == {
        "out", "overwrite", "progress", "dry_run", "predict", "checkpoint_every", "report_to", "device",
        "gradient_checkpointing",
    }
    assert set(RESUME_OVERRIDES) == {
        "mask_lr", "multiplier_lr", "head_lr", "finetune_lr", "checkpoint_every", "progress", "device",
        "gradient_checkpointing", "report_to",
    }
    assert _NOT_COMPARED == {"out", "overwrite", "dry_run", *RESUME_OVERRIDES}
    assert settings_where(per_point=False) == (
        "model", "profile", "data_dir", "mdl_block_end", "device", "gradient_checkpointing", "out", "overwrite",
        "dry_run", "progress",
    )  # mdl_block_end: reproduce mdl sets it for every block
    # predict is not part of the key but must match on resume; the learning rates are the other way round
    assert "predict" not in RESUME_OVERRIDES and "mask_lr" not in NON_RESULT_FIELDS
