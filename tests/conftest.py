"""Shared fixtures: tiny random models built from configs, small hand-written datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORDS = (
    "the a dog cat runs sat on mat big small red house john mary and sees saw it is was to of in "
    "new york london paris visited city . , !"
).split()


@pytest.fixture(autouse=True, scope="session")
def _no_transformers_progress_bars():
    """Tests save tiny models often; their "Writing model shards" bars would clutter the captured stderr
    (subprobe itself only silences transformers inside its own loading calls)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    yield
    if enabled:
        hf_logging.enable_progress_bar()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def probe_argv(model, files, out, *extra, task="upos", epochs=2, batch_size=4, eval_every=3) -> list[str]:
    """``subprobe probe`` arguments for a tiny model on tiny train/dev/test files (fp32, no progress bar)."""
    return [
        "probe",
        *("--task", task, "--model", str(model)),
        *("--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"])),
        *("--epochs", str(epochs), "--batch-size", str(batch_size), "--eval-every", str(eval_every)),
        *("--out", str(out), "--no-progress", "--precision", "fp32"),
        *extra,
    ]


def real_data_root() -> Path | None:
    """The shared datasets, if present (SUBPROBE_DATA or ../shared/data beside the repo)."""
    for candidate in (os.environ.get("SUBPROBE_DATA"), str(REPO.parent / "shared" / "data")):
        if candidate and Path(candidate, "ud-english-ewt").is_dir():
            return Path(candidate)
    return None


def build_tiny_model(
    path: Path,
    family: str = "bert",
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 64,
    max_positions: int = 64,
) -> Path:
    """Save a tiny random encoder of ``family`` and a word-piece tokenizer to ``path``."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModel, AutoTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + WORDS
        + ["##s", "##ed", "##ing", "un", "##be", "##liev", "##able"]
    )
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_positions})
    )
    AutoTokenizer.from_pretrained(path).save_pretrained(path)
    common = dict(vocab_size=len(vocab), max_position_embeddings=max_positions)
    if family == "distilbert":
        config = CONFIG_MAPPING["distilbert"](
            dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=intermediate, **common
        )
    else:
        config = CONFIG_MAPPING[family](
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            pad_token_id=0,
            **common,
        )
    torch.manual_seed(0)
    model = AutoModel.from_config(config)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


CONLLU = """# sent_id = 1
1	The	the	DET	DT	_	2	det	_	_
2	dog	dog	NOUN	NN	_	3	nsubj	_	_
3	runs	run	VERB	VBZ	_	0	root	_	_
4	.	.	PUNCT	.	_	3	punct	_	_

# sent_id = 2
1	Mary	Mary	PROPN	NNP	_	2	nsubj	_	_
2	saw	see	VERB	VBD	_	0	root	_	_
3	a	a	DET	DT	_	5	det	_	_
4	big	big	ADJ	JJ	_	5	amod	_	_
5	house	house	NOUN	NN	_	2	obj	_	_
6	in	in	ADP	IN	_	8	case	_	_
7	new	new	ADJ	JJ	_	8	amod	_	_
8	york	york	PROPN	NNP	_	5	nmod	_	_

# sent_id = 3
1	John	John	PROPN	NNP	_	2	nsubj	_	_
2	sat	sit	VERB	VBD	_	0	root	_	_
3	on	on	ADP	IN	_	5	case	_	_
4	the	the	DET	DT	_	5	det	_	_
5	mat	mat	NOUN	NN	_	2	obl	_	_
6	!	!	PUNCT	.	_	2	punct	_	_

"""


@pytest.fixture(scope="session")
def tiny_ud(tmp_path_factory) -> dict[str, Path]:
    """train/dev/test CoNLL-U files (the train file repeats the sentences so there are several batches)."""
    root = tmp_path_factory.mktemp("ud")
    paths = {}
    for split, repeat in (("train", 8), ("dev", 2), ("test", 1)):
        p = root / f"{split}.conllu"
        p.write_text(CONLLU * repeat, encoding="utf-8")
        paths[split] = p
    return paths


TINY_NER = """-DOCSTART- -X- O O

john NNP I-NP I-PER
visited VBD I-VP O
new NNP I-NP I-LOC
york NNP I-NP I-LOC
. . O O

mary NNP I-NP I-PER
saw VBD I-VP O
the DT I-NP O
big JJ I-NP I-MISC
city NN I-NP O
in IN I-PP O
paris NNP I-NP I-LOC
. . O O

"""


#: TINY_NER plus two sentences: a B- tag (IOB1: an entity right after one of the same type) and a one-word ORG
NER_TEXT = TINY_NER + """london NNP I-NP I-LOC
paris NNP I-NP B-LOC
! . O O

john NNP I-NP I-ORG

"""


def tiny_upos_splits(tiny_bert: Path, tiny_ud: dict[str, Path], max_length: int = 64):
    """The tiny UD data prepared for UPOS as a run prepares it: ``(task, encoder, tokenizer, splits, vocabs)``."""
    from subprobe.data.pipeline import prepare_splits, read_splits
    from subprobe.models.loading import load_encoder
    from subprobe.tasks.registry import get_task

    task = get_task("upos")
    encoder, tokenizer = load_encoder(str(tiny_bert))
    raw = read_splits(task, {k: tiny_ud[k] for k in ("train", "dev")})
    splits, vocabs = prepare_splits(task, raw, tokenizer, max_length)
    return task, encoder, tokenizer, splits, vocabs


@pytest.fixture(scope="session")
def tiny_ner(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ner")
    paths = {}
    for split, repeat in (("train", 8), ("dev", 2), ("test", 1)):
        p = root / f"{split}.txt"
        p.write_text(NER_TEXT + NER_TEXT.replace("-DOCSTART- -X- O O\n\n", "") * (repeat - 1), encoding="utf-8")
        paths[split] = p
    return paths


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A dataset root laid out as ../shared/data. EWT: CONLLU x 8 / x 2 for train / dev (24 / 6 sentences,
    144 / 36 words), its last two sentences for test (2 sentences, 14 words); CoNLL-2003: TINY_NER x 8 / x 2
    (16 / 4 sentences, 104 / 26 words), its second sentence for test (1 sentence, 8 words). Test differs from
    dev, so a split mix-up changes the numbers."""
    root = tmp_path_factory.mktemp("data-root")
    (root / "ud-english-ewt").mkdir()
    (root / "conll2003").mkdir()
    ud_test = CONLLU[CONLLU.index("# sent_id = 2"):]
    ner_test = "-DOCSTART- -X- O O\n\n" + TINY_NER[TINY_NER.index("mary"):]
    for split, ud, ner, ner_name in (("train", CONLLU * 8, TINY_NER * 8, "eng.train"),
                                     ("dev", CONLLU * 2, TINY_NER * 2, "eng.testa"),
                                     ("test", ud_test, ner_test, "eng.testb")):
        (root / "ud-english-ewt" / f"en_ewt-ud-{split}.conllu").write_text(ud, encoding="utf-8")
        (root / "conll2003" / ner_name).write_text(ner, encoding="utf-8")
    return root
