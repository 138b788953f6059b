import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from subprobe.data.batching import bucketed_batches, collate, encode_dataset, pool_words, token_batches
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return AutoTokenizer.from_pretrained(tiny_bert)


def test_word_to_subword_alignment(tokenizer):
    # "unbelievable" -> un ##be ##liev ##able (4 pieces); "dogs" -> dog ##s
    s = Sentence(words=["The", "unbelievable", "dogs", "runs"])
    ds = encode_dataset("x", [s], tokenizer, max_length=64)
    e = ds.encoded[0]
    pieces = tokenizer.convert_ids_to_tokens(e.input_ids.tolist())
    assert pieces == ["[CLS]", "the", "un", "##be", "##liev", "##able", "dog", "##s", "runs", "[SEP]"]
    assert e.word_start.tolist() == [1, 2, 6, 8]
    assert e.word_end.tolist() == [2, 6, 8, 9]


def test_pooling_first_last_mean(tokenizer):
    s = Sentence(words=["The", "unbelievable", "dogs"])
    ds = encode_dataset("x", [s], tokenizer, max_length=64)
    ds.encoded[0].labels["y"] = np.array([0, 1, 2])
    hidden = torch.arange(9, dtype=torch.float32).view(1, 9, 1).expand(1, 9, 2).clone()  # value = position
    for pooling, expected in (("last", [0, 1, 5, 7]), ("first", [0, 1, 2, 6]), ("mean", [0, 1, 3.5, 6.5])):
        batch = collate(ds.encoded, [0], pooling, tokenizer.pad_token_id)
        pooled = pool_words(hidden, batch, pooling)
        assert pooled[0, :, 0].tolist() == expected, pooling


def test_collate_pads_and_labels(tokenizer):
    sents = [Sentence(words=["the", "dog"]), Sentence(words=["a", "big", "red", "house"])]
    ds = encode_dataset("x", sents, tokenizer, max_length=64)
    for e, lab in zip(ds.encoded, ([1, 2], [3, 4, 5, 6])):
        e.labels["y"] = np.array(lab)
    batch = collate(ds.encoded, [0, 1], "last", 0)
    assert batch.word_mask.tolist() == [[False, True, True, False, False], [False, True, True, True, True]]
    assert batch.labels["y"].tolist() == [[-100, 1, 2, -100, -100], [-100, 3, 4, 5, 6]]
    assert batch.n_words == 6
    assert batch.attention_mask.sum().item() == 4 + 6


def test_over_long_sentences_dropped_and_counted_or_error(tokenizer):
    long = Sentence(words=["dog"] * 70, source="f.conllu", line=12)
    short = Sentence(words=["dog"])
    ds = encode_dataset("train", [short, long], tokenizer, max_length=64)
    assert ds.dropped == 1 and len(ds.encoded) == 1
    with pytest.raises(DataError, match=r"f.conllu:12: .*72 subwords.*over the model limit of 64"):
        encode_dataset("train", [long], tokenizer, max_length=64, long_policy="error")
    with pytest.raises(ConfigError):
        encode_dataset("train", [long], tokenizer, max_length=64, long_policy="truncate")


def test_word_without_subwords_becomes_unk(tokenizer):
    ds = encode_dataset("x", [Sentence(words=["dog", "\u200b", "cat"])], tokenizer, max_length=64)
    e = ds.encoded[0]
    assert e.n_words == 3 and (e.word_end > e.word_start).all()


def test_bucketed_batches_cover_everything_once_and_are_seeded(tokenizer):
    sents = [Sentence(words=["dog"] * (1 + i % 7)) for i in range(100)]
    ds = encode_dataset("x", sents, tokenizer, max_length=64)
    a = bucketed_batches(ds.encoded, 8, shuffle=True, seed=3)
    b = bucketed_batches(ds.encoded, 8, shuffle=True, seed=3)
    assert a == b
    assert sorted(i for batch in a for i in batch) == list(range(100))
    ordered = bucketed_batches(ds.encoded, 8, shuffle=False)
    lengths = [len(ds.encoded[i].input_ids) for batch in ordered for i in batch]
    assert lengths == sorted(lengths)


def test_token_batches_fill_a_budget_of_padded_subwords(tokenizer):
    # 1 + k words of "dog" are 3 + k subwords ([CLS] ... [SEP]); sentence i has 1 + i % 4 words
    sents = [Sentence(words=["dog"] * (1 + i % 4)) for i in range(10)]
    ds = encode_dataset("x", sents, tokenizer, max_length=64)
    assert [len(e.input_ids) for e in ds.encoded] == [3 + i % 4 for i in range(10)]
    # by length, then index: 3 subwords: 0, 4, 8; 4: 1, 5, 9; 5: 2, 6; 6: 3, 7. count x longest <= 12
    assert token_batches(ds.encoded, 12) == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]  # 9, 12, 10, 12 padded
    assert token_batches(ds.encoded, 5) == [[0], [4], [8], [1], [5], [9], [2], [6], [3], [7]]
    assert token_batches(ds.encoded, 2) == [[i] for i in (0, 4, 8, 1, 5, 9, 2, 6, 3, 7)]  # too long: one each


def test_label_vocab_sorted_and_unseen_error():
    vocab = LabelVocab.build(["VERB", "ADJ", "NOUN", "ADJ"])
    assert vocab.labels == ("ADJ", "NOUN", "VERB")
    with pytest.raises(DataError, match=r"dev.conllu: upos label\(s\) not seen in the training data: 'X' \(2 tokens\)"):
        vocab.encode_all([["ADJ", "X"], ["X"]], "dev.conllu", "upos")
