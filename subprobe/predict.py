"""``subprobe predict RUN_DIR --input FILE --out FILE``: tag a file with a trained probe.

Input formats (``--input-format``, detected by default):

* ``conllu``: CoNLL-U (upos, dep). Gold UPOS, or gold heads and relations, when every sentence has them.
* ``conll2003``: CoNLL-2003 columns, word first and NER tag last (ner); always gold.
* ``text``: one sentence per line, words separated by whitespace; never gold.

Output: CoNLL-U with the predicted column(s) filled in, every other column copied (upos, dep), or
``word gold predicted`` columns (``word predicted`` without gold) for ner, the files ``--predict``
writes. With gold labels the scores are computed by the run's own metric code on the same
sentences, so the run's dev file gives exactly the dev scores of ``metrics.json``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from subprobe.data.records import Sentence
from subprobe.errors import ConfigError

INPUT_FORMATS = ("auto", "conllu", "conll2003", "text")
_CONLLU_ROW = re.compile(r"^\d+(?:[.-]\d+)?\t(?:[^\t]*\t){8}[^\t]*$")
_NER_ROW = re.compile(r"^\S+(?:\s+\S+)*\s+(?:O|[BI]-\S+)$")


def detect_format(path: Path, task: str) -> str:
    """``conllu`` if the first word line is a 10-column CoNLL-U row, ``conll2003`` if it is ``-DOCSTART-`` or
    (ner) ends in a tag, else ``text``."""
    from subprobe.data.textfile import read_text_utf8

    for line in read_text_utf8(str(path), "input").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if _CONLLU_ROW.match(line):
            return "conllu"
        if line.startswith("-DOCSTART-") or (task == "ner" and len(line.split()) >= 2 and _NER_ROW.match(line)):
            return "conll2003"  # (a -DOCSTART- line is never a sentence: another task's run then says so)
        return "text"
    return "text"


def read_input(path: str | Path, task, input_format: str = "auto") -> tuple[list[Sentence], bool, str]:
    """Sentences of ``path``, whether they carry gold labels for ``task``, and the format read."""
    from subprobe.data.conllu import read_conllu
    from subprobe.data.textfile import read_text_utf8

    path = Path(path)
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"--input-format {input_format!r} is not known; use one of {', '.join(INPUT_FORMATS)}")
    if not path.is_file():
        raise ConfigError(f"--input {path}: {'is a directory, not a file' if path.is_dir() else 'no such file'}")
    fmt = detect_format(path, task.name) if input_format == "auto" else input_format
    if fmt == "conllu":
        if task.name == "ner":
            raise ConfigError("--input: a ner run reads CoNLL-2003 columns or plain text, not CoNLL-U")
        sentences = read_conllu(path)
        if task.name == "upos":
            gold = all(s.upos is not None and all(t not in ("_", "") for t in s.upos) for s in sentences)
        else:
            gold = all(s.heads is not None and s.deprels is not None for s in sentences)
        return sentences, gold, fmt
    if fmt == "conll2003":
        if task.name != "ner":
            raise ConfigError(f"--input: a {task.name} run reads CoNLL-U or plain text, not CoNLL-2003 columns")
        return task.read(path), True, fmt
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
    """Tag ``input_path`` with ``run`` (a :class:`~subprobe.loaded.LoadedRun` or a run directory) into
    ``out_path``; returns the scores when the input has gold labels, else None."""
    from subprobe.loaded import LoadedRun, load_run

    if not isinstance(run, LoadedRun):
        run = load_run(run)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path}: is a directory; give the path of the file to write")
    if not out_path.parent.is_dir():
        raise ConfigError(f"--out {out_path}: directory {out_path.parent} does not exist; create it first")
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
    """--out must not replace the input file or a file of the run directory (what predict reads)."""
    if not out_path.exists():
        return
    if input_path.exists() and out_path.samefile(input_path):
        raise ConfigError(f"--out {out_path}: is the --input file; write the predictions to another file")
    from subprobe.runs import RunDir

    if out_path.resolve().parent == Path(run_dir).resolve() and out_path.name in RunDir.FILES:
        raise ConfigError(
            f"--out {out_path}: is a file of the run directory {run_dir}; write the predictions to another file"
        )


def format_scores(scores: dict[str, float], primary: str) -> str:
    """The primary metric first, then the others, each with its full value (they compare exactly)."""
    keys = [primary] + sorted(k for k in scores if k != primary)
    return "\n".join(f"{k} {scores[k]!r}" for k in keys if k in scores)
