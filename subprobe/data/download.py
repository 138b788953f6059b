"""``subprobe data get``: fetch a Universal Dependencies treebank release from its public repository.

Files come from ``<base>/<repository>/r<release>/<file>``; the base is GitHub's raw-file host unless
``base_url`` or ``$SUBPROBE_UD_URL`` names a mirror laid out the same way (``http(s)://`` or ``file://``).
File names follow UD's rules (``<lcode>_<treebank>-ud-<split>.conllu`` since r2.2, ``<lcode>-ud-<split>``
for a language's main treebank up to r2.1, e.g. EWT's ``en-ud-*``); a split the release lacks (some
treebanks have no train or dev file) is skipped, a release without a test file is an unknown treebank or
release. Each file streams into a temporary file beside its target and is checked against the SHA-256
this module knows for it (EWT r2.1, r2.16), then all are renamed into place at once; any failure removes
every temporary file, so nothing partial is left. ``SHA256SUMS`` and ``SOURCE.txt`` are written beside.

Layout: ``<dir>/<repository>/``, where ``dir`` defaults to ``<user data dir>/ud-<release>`` (one root per
release, so releases coexist). A dataset the runs know by folder name (UD English-EWT) is then read with
``--data-dir <dir>``; any other treebank with explicit ``--train/--dev/--test`` paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from subprobe.atomic import Staged, write_text
from subprobe.data.datasets import DATASETS, SPLITS
from subprobe.data.textfile import content_sha256
from subprobe.errors import ConfigError, SubprobeError, WriteError

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_RELEASE", "URL_ENV", "Downloaded", "get", "user_data_dir"]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/UniversalDependencies"
#: A mirror of the repositories' raw files (``<base>/<repository>/r<release>/<file>``), e.g. for air-gapped sites.
URL_ENV = "SUBPROBE_UD_URL"
#: The release fetched when none is given (its EWT checksums are known).
DEFAULT_RELEASE = "2.16"
ALIASES = {"ud-ewt": "UD_English-EWT", "ewt": "UD_English-EWT"}
TIMEOUT_S = 60
_CHUNK = 1 << 16

#: SHA-256 of released files, by (repository, release); files not listed are recorded, not checked.
KNOWN_SHA256: dict[tuple[str, str], dict[str, str]] = {
    ("UD_English-EWT", "2.1"): {
        "en-ud-train.conllu": "b172df40dc470f3cd32f3db5755477dda6cd1389fb81435e438a65489ef15f36",
        "en-ud-dev.conllu": "a487aa26ff86008e10979e2c56051ea0f0292748122740980419c7c1fe497367",
        "en-ud-test.conllu": "36e497066b455c6779afaf64b7b4e3b9ebb756a203334601f5ccaa8d88c304f3",
    },
    ("UD_English-EWT", "2.16"): {
        "en_ewt-ud-train.conllu": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
        "en_ewt-ud-dev.conllu": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
        "en_ewt-ud-test.conllu": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
    },
}

#: Licence and description, fetched when present (old releases have README.txt).
EXTRAS = (("LICENSE.txt",), ("README.md", "README.txt"))

SUMS = "SHA256SUMS"
SOURCE = "SOURCE.txt"

CONLL2003_HOWTO = """\
CoNLL-2003 English NER cannot be downloaded: its text is the Reuters Corpus (RCV1), which NIST
distributes only under a research-use agreement that does not allow redistribution, so subprobe
neither ships nor fetches it. To build it:
  1. request RCV1 from NIST: https://trec.nist.gov/data/reuters/reuters.html
  2. get the CoNLL-2003 annotations and scripts (https://www.clips.uantwerpen.be/conll2003/ner/) and
     rebuild eng.train, eng.testa (dev) and eng.testb (test) from your copy of RCV1: 4 space-separated
     columns `word POS chunk NER`, IOB1 tags, a blank line between sentences
  3. put the three files in DIR/conll2003/ (DIR may be a data root that holds UD_English-EWT/ too) and run
       subprobe probe --task ner --data-dir DIR        (or export SUBPROBE_DATA=DIR)
Cite Tjong Kim Sang & De Meulder (2003), Introduction to the CoNLL-2003 Shared Task."""


def user_data_dir() -> Path:
    """Where ``subprobe data get`` puts releases by default (platformdirs' user data directory)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("subprobe", appauthor=False))


@dataclass
class Downloaded:
    """What :func:`get` fetched: the treebank's folder, its split files and how a run reads them."""

    treebank: str
    release: str
    root: Path
    files: dict[str, Path | None]
    extras: list[Path] = field(default_factory=list)
    checked: dict[str, bool] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.root / self.treebank

    @property
    def by_data_root(self) -> bool:
        """True when runs find this treebank under ``--data-dir root`` (a dataset a task knows by name)."""
        return any(self.treebank in d.folders for d in DATASETS)

    def probe_args(self) -> list[str]:
        """The ``subprobe probe`` flags that read these files."""
        if self.by_data_root:
            return ["--data-dir", str(self.root)]
        return [arg for split in SPLITS if self.files.get(split) for arg in (f"--{split}", str(self.files[split]))]

    def instructions(self) -> str:
        """What to pass to ``subprobe probe`` (printed at the end of ``subprobe data get``)."""
        import shlex

        args = " ".join(shlex.quote(a) for a in self.probe_args())
        lines = []
        if self.files.get("train") is None or self.files.get("dev") is None:
            absent = " and ".join(s for s in ("train", "dev") if self.files.get(s) is None)
            lines.append(
                f"{self.treebank} r{self.release} has no {absent} file: a probe needs --train and --dev, so use its "
                "files beside another treebank's (e.g. --test FILE), or score a finished run on them with "
                "`subprobe predict RUN --input FILE`"
            )
            if self.files.get("test") is not None:
                return "\n".join([*lines, f"  test file: {self.files['test']}"])
        lines.append("use it with:")
        lines.append(f"  subprobe probe --task upos {args}" + ("" if self.by_data_root else "  --model MODEL"))
        if self.by_data_root:
            lines.append(f"  (or export SUBPROBE_DATA={shlex.quote(str(self.root))}; --task dep reads it too)")
        else:
            lines.append("  (--task dep too; pick a --model whose tokenizer covers the language)")
        return "\n".join(lines)


def treebank_name(name: str) -> str:
    """The UD repository name for ``name`` (``ud-ewt`` or ``UD_<Language>-<Treebank>``); one-line error else."""
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    if name.lower() in ("conll2003", "conll-2003"):
        raise ConfigError("CoNLL-2003 cannot be downloaded (Reuters RCV1, not redistributable); "
                          "run `subprobe data get conll2003` for where to get it and where to put it")
    if not re.fullmatch(r"UD_[A-Za-z][A-Za-z_]*(-[A-Za-z0-9]+)?", name):
        raise ConfigError(
            f"data get {name!r}: unknown dataset; use ud-ewt, conll2003 or a UD treebank's repository name such "
            "as UD_French-GSD (github.com/UniversalDependencies)"
        )
    return name


def parse_release(text: str) -> str:
    """``2.16``, ``r2.16`` or ``v2.16`` -> ``2.16``; one-line error for anything else."""
    match = re.fullmatch(r"[rv]?(\d+)\.(\d+)", text.strip())
    if not match:
        raise ConfigError(f"--release {text!r}: not a UD release; give one such as 2.16 or 2.1")
    return f"{int(match[1])}.{int(match[2])}"


def split_file_names(treebank: str, release: str, prefix: str | None = None) -> dict[str, list[str]]:
    """Candidate file names of each split, in the order they are tried (UD's naming rules)."""
    from subprobe.data.ud_languages import LANGUAGE_CODES

    language, _, code = treebank.removeprefix("UD_").partition("-")
    if prefix is None:
        lcode = LANGUAGE_CODES.get(language)
        if lcode is None:
            raise ConfigError(
                f"{treebank}: subprobe does not know the UD language code of {language!r}; pass --prefix, the "
                f"part before -ud-train.conllu in the file names at github.com/UniversalDependencies/{treebank}"
            )
        prefix = f"{lcode}_{code.lower()}" if code else lcode
        old_main = [f"{lcode}-ud-{{split}}.conllu"]  # a language's main treebank up to r2.1 (EWT: en-ud-*)
    else:
        old_main = []
    major, minor = (int(x) for x in release.split("."))
    patterns = [f"{prefix}-ud-{{split}}.conllu"]
    if (major, minor) < (2, 2):
        patterns = old_main + [p for p in patterns if p not in old_main]
    return {split: [p.format(split=split) for p in patterns] for split in SPLITS}


def get(
    name: str,
    release: str | None = None,
    dir: str | Path | None = None,  # noqa: A002 (the CLI's --dir)
    *,
    base_url: str | None = None,
    prefix: str | None = None,
    progress: bool = True,
    echo: Callable[..., None] = print,
) -> Downloaded:
    """Download treebank ``name`` (``ud-ewt`` or ``UD_<Language>-<Treebank>``) at UD ``release``.

    Files go to ``dir/<repository>/`` (default ``dir``: ``user_data_dir()/ud-<release>``); ``base_url``
    (else ``$SUBPROBE_UD_URL``, else GitHub) serves ``<repository>/r<release>/<file>``; ``prefix`` overrides
    the file-name prefix (``fr_gsd``) for a language subprobe has no code for. Files already there with the
    recorded checksum are kept. Returns what is there; every failure is one :class:`SubprobeError` line and
    leaves no partial file.
    """
    treebank = treebank_name(name)
    release = parse_release(release or DEFAULT_RELEASE)
    base = (base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    root = Path(dir).expanduser() if dir else user_data_dir() / f"ud-{release}"
    target = root / treebank
    recorded = _check_target(target, treebank, release)
    names = split_file_names(treebank, release, prefix)
    known = KNOWN_SHA256.get((treebank, release), {})
    fetch = _Fetcher(f"{base}/{treebank}/r{release}", target, known, recorded, progress)
    created = [d for d in (target, *target.parents) if not d.exists()]  # removed again on failure
    target.mkdir(parents=True, exist_ok=True)
    wrote_source = not (target / SOURCE).exists()
    try:
        files: dict[str, Path | None] = {}
        for split in SPLITS:
            files[split] = next((p for p in map(fetch, names[split]) if p is not None), None)
        if files["test"] is None:
            looked = ", ".join(names["test"])
            raise SubprobeError(
                f"{treebank} r{release}: not found at {fetch.base}/ (no {looked}); check the treebank's name "
                "(as on github.com/UniversalDependencies) and the release"
            )
        extras = [p for group in EXTRAS if (p := next(filter(None, map(fetch, group)), None)) is not None]
        write_text(target / SOURCE, f"{treebank} r{release}\nfrom {fetch.base}/\n")
        fetch.commit()
    except BaseException:
        fetch.discard()
        if wrote_source:
            (target / SOURCE).unlink(missing_ok=True)
        for d in created:  # innermost first; only while still empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    write_text(target / SUMS, "".join(f"{sha}  {file}\n" for file, sha in sorted(fetch.sums.items())))
    result = Downloaded(treebank, release, root, files, extras, {f: f in known for f in fetch.sums})
    _report(result, fetch, echo)
    return result


def _check_target(target: Path, treebank: str, release: str) -> dict[str, str]:
    """Refuse a folder holding another release or files subprobe did not fetch; the checksums recorded there."""
    if not target.exists():
        return {}
    if not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a directory; choose another --dir")
    source = target / SOURCE
    if not source.is_file():
        if any(target.iterdir()):
            raise ConfigError(
                f"{target}: holds files that subprobe data get did not write; choose another --dir or empty it"
            )
        return {}
    first = source.read_text(encoding="utf-8").splitlines()[:1]
    if first != [f"{treebank} r{release}"]:
        held = first[0] if first else "another download"
        raise ConfigError(
            f"{target}: holds {held}, not {treebank} r{release}; choose another --dir (one folder per release)"
        )
    sums: dict[str, str] = {}
    if (target / SUMS).is_file():
        for line in (target / SUMS).read_text(encoding="utf-8").splitlines():
            sha, _, file = line.partition("  ")
            if file:
                sums[file] = sha
    return sums


class _Fetcher:
    """Fetches files of one release into temporary files beside their targets; :meth:`commit` renames them
    all into place, :meth:`discard` removes them."""

    def __init__(self, base: str, target: Path, known: dict[str, str], recorded: dict[str, str],
                 progress: bool) -> None:
        self.base, self.target, self.known, self.recorded, self.progress = base, target, known, recorded, progress
        self.staged = Staged()
        self.sums: dict[str, str] = {}
        self.kept: list[str] = []

    def __call__(self, file: str) -> Path | None:
        """Fetch ``file``; its final path, or None if the release has no such file."""
        dest = self.target / file
        expected = self.known.get(file) or self.recorded.get(file)
        if expected and dest.is_file() and content_sha256(dest) == expected:
            self.sums[file] = expected
            self.kept.append(file)
            return dest
        url = f"{self.base}/{file}"
        try:
            sha = self._download(url, dest, file)
        except BaseException:
            self.staged.drop(dest)
            raise
        if sha is None:
            self.staged.drop(dest)
            return None
        wanted = self.known.get(file)
        if wanted and sha != wanted:
            raise SubprobeError(
                f"{url}: SHA-256 {sha} differs from the release's {wanted}; nothing was kept (try again; a "
                f"mirror set with ${URL_ENV} must serve the release files unchanged)"
            )
        self.sums[file] = sha
        return dest

    def _download(self, url: str, dest: Path, file: str) -> str | None:
        """Stream ``url`` into a temporary file for ``dest`` (staged) with a progress bar; its SHA-256, or None for
        a file that does not exist."""
        from tqdm import tqdm

        request = urllib.request.Request(url, headers={"User-Agent": "subprobe"})
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise SubprobeError(f"{url}: HTTP {exc.code} {exc.reason}; try again later, or set ${URL_ENV} to a "
                                "mirror") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):  # file:// mirror
                return None
            raise _offline(url, exc.reason) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _offline(url, exc) from None
        digest = hashlib.sha256()
        total = response.headers.get("Content-Length")
        size = 0
        try:
            with response, self.staged.open(dest) as out, tqdm(
                total=int(total) if total and total.isdigit() else None, unit="B", unit_scale=True,
                unit_divisor=1024, desc=file, disable=not self.progress, file=sys.stderr, leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    try:
                        out.write(chunk)
                    except OSError as exc:  # a full disk, not the network
                        raise WriteError(str(dest), exc.strerror or str(exc)) from None
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise _offline(url, exc, "the download broke off") from None
        if total and total.isdigit() and size != int(total):
            raise SubprobeError(f"{url}: received {size:,} of {int(total):,} bytes; nothing was kept (try again)")
        return digest.hexdigest()

    def commit(self) -> None:
        self.staged.commit()

    def discard(self) -> None:
        self.staged.discard()


def _offline(url: str, reason, what: str = "cannot download") -> SubprobeError:
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return SubprobeError(
        f"{what} {url}: {text}; check the network connection (offline?), or set ${URL_ENV} to a mirror"
    )


def _report(result: Downloaded, fetch: _Fetcher, echo: Callable[..., None]) -> None:
    echo(f"{result.treebank} r{result.release} -> {result.directory}")
    for split in SPLITS:
        path = result.files.get(split)
        if path is None:
            echo(f"  {split:<5}  (none in this release)")
            continue
        sha = fetch.sums[path.name]
        how = "checked against the known SHA-256" if result.checked.get(path.name) else "SHA-256 recorded"
        kept = ", already there" if path.name in fetch.kept else ""
        echo(f"  {split:<5}  {path.name}  {path.stat().st_size:,} bytes  sha256 {sha[:16]}... ({how}{kept})")
    if result.extras:
        echo(f"  also   {', '.join(p.name for p in result.extras)} (licence and description); {SUMS}")
    echo(result.instructions())
