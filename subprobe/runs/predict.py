"""``subprobe predict RUN_DIR --input FILE --output FILE``: tag a file with a trained probe.

Input formats (``--input-format``, detected by default):

* ``conllu``: CoNLL-U (the UD tasks). Gold labels when every sentence has the task's (``Task.has_labels``).
* ``conll2003``: CoNLL-2003 columns, word first and NER tag last (the tasks that read it); always gold.
* ``text``: one sentence per line, words separated by whitespace; never gold.

Which formats a run reads is its task's ``input_formats``. Output: the files ``--predict`` writes, in the
task's format (``Task.write_predictions``): CoNLL-U with the predicted column(s) filled in and every other
column copied, or ``word gold predicted`` columns (``word predicted`` without gold) for CoNLL-2003. With
gold labels the scores are computed by the run's own metric code on the same sentences, so the run's dev
file gives exactly the dev scores of ``metrics.json``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from subprobe.data.records import Sentence
from subprobe.errors import ConfigError
from subprobe.tasks.base import INPUT_CONLL2003 as CONLL2003
from subprobe.tasks.base import INPUT_CONLLU as CONLLU
from subprobe.tasks.base import INPUT_TEXT as TEXT

INPUT_FORMATS = ("auto", CONLLU, CONLL2003, TEXT)
#: How messages name the formats.
FORMAT_NAMES = {CONLLU: "CoNLL-U", CONLL2003: "CoNLL-2003 columns", TEXT: "plain text"}
_CONLLU_ROW = re.compile(r"^\d+(?:[.-]\d+)?\t(?:[^\t]*\t){8}[^\t]*$")
_NER_ROW = re.compile(r"^\S+(?:\s+\S+)*\s+(?:O|[BI]-\S+)$")


def detect_format(path: Path, task) -> str:
    """``conllu`` if the first word line is a 10-column CoNLL-U row, ``conll2003`` if it is ``-DOCSTART-`` or (a
    task that reads it) ends in a tag, else ``text``."""
    from subprobe.data.textfile import read_text_utf8

    for line in read_text_utf8(str(path), "input").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if _CONLLU_ROW.match(line):
            return CONLLU
        if line.startswith("-DOCSTART-") or (
            CONLL2003 in task.input_formats and len(line.split()) >= 2 and _NER_ROW.match(line)
        ):
            return CONLL2003  # (a -DOCSTART- line is never a sentence: another task's run then says so)
        return TEXT
    return TEXT


def read_input(path: str | Path, task, input_format: str = "auto") -> tuple[list[Sentence], bool, str]:
    """Sentences of ``path``, whether they carry gold labels for ``task``, and the format read."""
    from subprobe.data.textfile import read_text_utf8

    path = Path(path)
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"--input-format {input_format!r} is not known; use one of {', '.join(INPUT_FORMATS)}")
    if not path.is_file():
        raise ConfigError(f"--input {path}: {'is a directory, not a file' if path.is_dir() else 'no such file'}")
    fmt = detect_format(path, task) if input_format == "auto" else input_format
    if fmt != TEXT:
        if fmt not in task.input_formats:
            readable = " or ".join(FORMAT_NAMES[f] for f in dict.fromkeys((*task.input_formats, TEXT)))
            raise ConfigError(f"--input: a {task.name} run reads {readable}, not {FORMAT_NAMES[fmt]}")
        sentences, gold = task.read_input(path, fmt)
        return sentences, gold, fmt
    sentences = [
        Sentence(words=line.split(), source=str(path), line=n)
        for n, line in enumerate(read_text_utf8(str(path), "text").splitlines(), start=1)
        if line.strip()
    ]
    if not sentences:
        raise ConfigError(f"--input {path}: no sentences (one sentence per line, words separated by spaces)")
    return sentences, False, fmt


def predict_file(
    run, input_path: str | Path, out_path: str | Path, *, input_format: str = "auto", echo=print
) -> dict[str, float] | None:
    """Tag ``input_path`` with ``run`` (a :class:`~subprobe.runs.loaded.LoadedRun` or a run directory) into
    ``out_path``; returns the scores when the input has gold labels, else None."""
    from subprobe.runs.loaded import LoadedRun, load_run

    if not isinstance(run, LoadedRun):
        run = load_run(run)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ConfigError(f"--output {out_path}: is a directory; give the path of the file to write")
    if not out_path.parent.is_dir():
        raise ConfigError(f"--output {out_path}: directory {out_path.parent} does not exist; create it first")
    _check_not_overwriting(out_path, Path(input_path), run.run_dir)
    sentences, gold, fmt = read_input(input_path, run.task, input_format)
    dataset = run.encode(sentences, name=str(input_path))
    if dataset.dropped:
        echo(
            f"{input_path}: {dataset.dropped} sentence(s) longer than {run.max_length} subwords are not predicted "
            "(left out of the output and the scores)",
            file=sys.stderr,
        )
    if gold:
        run.task.attach_labels(dataset, run.vocabs)
    predictions = run.predict_encoded(dataset)
    run.task.write_predictions(dataset, predictions, run.vocabs, out_path)
    echo(f"wrote {len(dataset.encoded)} sentence(s) ({fmt} input) to {out_path}", file=sys.stderr)
    if not gold:
        return None
    return run.score(dataset, predictions)


def _check_not_overwriting(out_path: Path, input_path: Path, run_dir: Path) -> None:
    """--output must not replace the input file or a file of the run directory (what predict reads)."""
    if not out_path.exists():
        return
    if input_path.exists() and out_path.samefile(input_path):
        raise ConfigError(f"--output {out_path}: is the --input file; write the predictions to another file")
    from subprobe.runs.directory import RunDir

    if out_path.resolve().parent == Path(run_dir).resolve() and out_path.name in RunDir.FILES:
        raise ConfigError(
            f"--output {out_path}: is a file of the run directory {run_dir}; write the predictions to another file"
        )


def format_scores(scores: dict[str, float], primary: str) -> str:
    """The primary metric first, then the others, each with its full value (they compare exactly)."""
    keys = [primary] + sorted(k for k in scores if k != primary)
    return "\n".join(f"{k} {scores[k]!r}" for k in keys if k in scores)
