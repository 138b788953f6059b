"""The datasets tasks read: where each lives under a data root, and the one subprobe ships (package data).

A task names its dataset (``Task.dataset``); :func:`subprobe.data.sources.find_splits` turns the dataset
and the user's flags into files. Under a data root (``--data-dir`` / ``$SUBPROBE_DATA``) a dataset is looked
for in each of its ``folders`` with each of its file-name ``schemes``, in order; the first folder and scheme
with any split file is used for every split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "dev", "test")

#: Package data: ``subprobe/data/embedded/<folder>/``.
EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"


@dataclass(frozen=True)
class Embedded:
    """A dataset release shipped inside the package (xz-compressed, with its licence and SOURCE.md)."""

    title: str
    folder: str
    release: str
    files: dict[str, str]
    licence: str
    origin: str

    @property
    def directory(self) -> Path:
        return EMBEDDED_ROOT / self.folder

    def path(self, split: str) -> Path:
        return self.directory / self.files[split]

    def package_path(self, split: str) -> str:
        """The file's path inside the installed package (the same on every machine)."""
        return f"subprobe/data/embedded/{self.folder}/{self.files[split]}"


@dataclass(frozen=True)
class DatasetFacts:
    """Where a dataset's split files are found, and how a user gets it when they are not."""

    title: str
    folders: tuple[str, ...]
    schemes: tuple[dict[str, str], ...]
    how_to_get: str
    embedded: Embedded | None = None

    def candidates(self) -> list[dict[str, str]]:
        """Every (folder, scheme) as split -> path relative to a data root, in the order they are tried."""
        return [{s: f"{folder}/{names[s]}" for s in names} for folder in self.folders for names in self.schemes]


def _ud_scheme(prefix: str) -> dict[str, str]:
    return {split: f"{prefix}-ud-{split}.conllu" for split in SPLITS}


#: UD English-EWT, any release: the folder of the old layout (``ud-english-ewt``) or the repository name
#: (what ``subprobe data get`` and a ``git clone`` make); the file names since r2.2 (``en_ewt-ud-*``) or up
#: to r2.1 (``en-ud-*``).
UD_ENGLISH_EWT = DatasetFacts(
    title="UD English-EWT",
    folders=("ud-english-ewt", "UD_English-EWT"),
    schemes=(_ud_scheme("en_ewt"), _ud_scheme("en")),
    how_to_get="subprobe data get ud-ewt --release 2.16 downloads another release",
    embedded=Embedded(
        title="UD English-EWT r2.1",
        folder="ud-english-ewt-r2.1",
        release="r2.1",
        files={split: f"en-ud-{split}.conllu.xz" for split in SPLITS},
        licence="CC BY-SA 4.0",
        origin="github.com/UniversalDependencies/UD_English-EWT, tag r2.1",
    ),
)

#: CoNLL-2003 English NER: the shared task's own file names (dev = testa, test = testb). Not redistributable.
CONLL2003 = DatasetFacts(
    title="CoNLL-2003 English NER",
    folders=("conll2003",),
    schemes=({"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"},),
    how_to_get="CoNLL-2003 cannot be redistributed; `subprobe data get conll2003` says where it comes from",
)

#: Every dataset a task may name, and the releases shipped as package data.
DATASETS = (UD_ENGLISH_EWT, CONLL2003)
EMBEDDED = tuple(d.embedded for d in DATASETS if d.embedded is not None)
