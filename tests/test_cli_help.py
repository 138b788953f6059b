"""A CLI that explains itself: choices, defaults and groups in --help, --version, no global side effects."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path

import pytest

import subprobe
from subprobe.cli import GROUP_ORDER, build_parser, main
from subprobe.config import PROFILES, ProbeConfig
from subprobe.errors import ConfigError
from subprobe.runs import default_out


def _probe_help() -> str:
    parser = build_parser()
    probe = parser._subparsers._group_actions[0].choices["probe"]
    probe.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=2000, max_help_position=200)  # 1 line/flag
    return probe.format_help()


def _flag_line(text: str, flag: str) -> str:
    (line,) = [line for line in text.splitlines() if re.match(rf"\s+{flag}[ ,]", line)]
    return line


def test_every_enumerated_flag_lists_its_choices_and_every_flag_its_default():
    from subprobe.cli import _registry_choices

    text = _probe_help()
    hints = typing.get_type_hints(ProbeConfig)
    literal = 0
    for f in dataclasses.fields(ProbeConfig):
        flag = "--" + f.name.replace("_", "-")
        line = _flag_line(text, flag)
        kind = hints[f.name]
        if f.name in _registry_choices():  # a registry's names (tasks, probes), checked by the registry
            kind = typing.Literal[_registry_choices()[f.name]]
        args = [a for a in typing.get_args(kind) if a is not type(None)] if typing.get_origin(kind) else []
        if args and typing.get_origin(args[0]) is typing.Literal:
            kind = args[0]
        if typing.get_origin(kind) is typing.Literal:
            literal += 1
            assert f"{flag} {{{','.join(typing.get_args(kind))}}}" in line, line
        assert "(default" in line, line
        if isinstance(f.default, bool):
            assert f"(default: {'true' if f.default else 'false'})" in line, line
    assert literal >= 12


def test_help_groups_flags_and_says_the_right_defaults():
    text = _probe_help()
    titles = [line[:-1] for line in text.splitlines() if line.endswith(" options:")]
    assert titles == [f"{g} options" for g in GROUP_ORDER]
    groups = {f.metadata.get("group") for f in dataclasses.fields(ProbeConfig)}
    assert groups == set(GROUP_ORDER)  # a new field needs a group
    model = _flag_line(text, "--model")
    assert model.count("default") == 1 and model.endswith("(default: all-MiniLM-L6-v2)")
    out = _flag_line(text, "--out")
    assert "runs/<task>-<probe>[-<granularity>|-r<rank>]-<setting>-s<seed>" in out
    # the pattern is what default_out() does
    assert default_out(ProbeConfig(task="dep", granularity="2,1", setting="reset-all", seed=3)) == Path(
        "runs/dep-subnetwork-2x1-reset-all-s3"
    )
    assert default_out(ProbeConfig(probe="mlp", rank="25")) == Path("runs/upos-mlp-r25-pretrained-s0")
    assert default_out(ProbeConfig(probe="linear", task="ner")) == Path("runs/ner-linear-pretrained-s0")


def test_literal_choices_are_the_registries():
    from subprobe.data.batching import LONG_POLICIES, WORD_POOLINGS
    from subprobe.masking.layouts import LAYOUTS
    from subprobe.masking.subnetwork import PENALTIES
    from subprobe.models.reset import INITS, SETTINGS
    from subprobe.probes.registry import PROBE_NAMES
    from subprobe.tasks.dep import DECODERS
    from subprobe.tasks.registry import TASK_NAMES

    hints = typing.get_type_hints(ProbeConfig)

    def choices(name):
        from subprobe.cli import _registry_choices

        if name in _registry_choices():  # a registry's names, checked by the registry
            return _registry_choices()[name]
        kind = hints[name]
        if typing.get_origin(kind) is not typing.Literal:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        return typing.get_args(kind)

    expected = {
        "task": TASK_NAMES, "probe": PROBE_NAMES, "setting": SETTINGS, "init": INITS, "profile": tuple(PROFILES),
        "word_pooling": WORD_POOLINGS, "long_sentences": LONG_POLICIES, "layout": LAYOUTS, "penalty": PENALTIES,
        "decoder": DECODERS, "ner_scheme": ("auto", "iob1", "iob2"), "precision": ("fp32", "bf16"),
    }
    for name, values in expected.items():
        assert set(choices(name)) == set(values), name


def test_a_value_outside_the_choices_is_one_error_line(tiny_bert, capsys, tmp_path):
    assert main(["probe", "--model", str(tiny_bert), "--dry-run", "--layout", "diagonal"]) == 2
    err = capsys.readouterr().err
    assert err == "subprobe: error: --layout 'diagonal' is not known; use one of strided, contiguous\n"
    config = tmp_path / "c.yaml"
    config.write_text("word_pooling: max\n")
    with pytest.raises(ConfigError, match=r"c.yaml:1: word_pooling 'max' is not known; use one of last, first, mean"):
        ProbeConfig.from_yaml(config)
    config.write_text("precision: null\ntask: dep\n")
    assert ProbeConfig.from_yaml(config).task == "dep"


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"subprobe {subprobe.__version__}\n"


def test_loading_a_model_leaves_transformers_logging_and_progress_bars_alone(tiny_bert):
    from transformers.utils import logging as hf_logging

    from subprobe.models.loading import load_encoder

    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    try:
        hf_logging.set_verbosity_info()
        hf_logging.enable_progress_bar()
        load_encoder(str(tiny_bert))
        assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == (hf_logging.INFO, True)
        hf_logging.set_verbosity_warning()
        hf_logging.disable_progress_bar()
        load_encoder(str(tiny_bert))
        assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == (hf_logging.WARNING, False)
    finally:
        hf_logging.set_verbosity(before[0])
        (hf_logging.enable_progress_bar if before[1] else hf_logging.disable_progress_bar)()
