import pytest
import torch
from transformers import BertConfig, BertModel

from subprobe.errors import ConfigError
from subprobe.masking.layouts import Granularity, expand_mask, mask_shape, paper_granularities
from subprobe.models.targets import find_targets

PAPER_COUNTS = [144, 576, 4_608, 18_432, 110_592, 442_368, 3_538_944, 14_155_776, 84_934_656]


def bert_base_targets():
    with torch.device("meta"):
        model = BertModel(BertConfig())  # bert-base shapes, no memory
    return find_targets(model, "bert")


def test_bert_base_has_72_matrices():
    targets = bert_base_targets()
    assert len(targets) == 72
    assert sum(t.role == "ffn_in" for t in targets) == 12


@pytest.mark.parametrize("k,expected", list(enumerate(PAPER_COUNTS, start=1)))
def test_paper_mask_counts_on_bert_base(k, expected):
    targets = bert_base_targets()
    g = Granularity.parse(f"paper-{k}")
    total = 0
    for t in targets:
        r, c = mask_shape(t.shape, g.block(t.shape, 768))
        total += r * c
    assert total == expected


def test_named_units_on_bert_base():
    targets = bert_base_targets()

    def count(spec):
        g = Granularity.parse(spec)
        return sum(
            mask_shape(t.shape, g.block(t.shape, 768))[0] * mask_shape(t.shape, g.block(t.shape, 768))[1]
            for t in targets
        )

    assert count("neuron") == 110_592
    assert count("weight") == 84_934_656
    assert count("matrix") == 72


def test_paper_granularities_scale_to_width():
    assert paper_granularities(384) == [
        (384, 384),
        (384, 96),
        (384, 12),
        (384, 3),
        (384, 1),
        (96, 1),
        (12, 1),
        (3, 1),
        (1, 1),
    ]
    assert paper_granularities(768)[1] == (768, 192)


@pytest.mark.parametrize("block", [(1, 1), (2, 3), (4, 1), (1, 6), (8, 6)])
def test_strided_and_contiguous_match_explicit_reference(block):
    out_f, in_f = 8, 12
    R, C = mask_shape((out_f, in_f), block)
    mask = torch.arange(R * C, dtype=torch.float32).reshape(R, C)
    strided = expand_mask(mask, block, "strided")
    contiguous = expand_mask(mask, block, "contiguous")
    for r in range(out_f):
        for c in range(in_f):
            assert strided[r, c] == mask[r % R, c % C]
            assert contiguous[r, c] == mask[r // block[0], c // block[1]]
    # each mask entry governs exactly rows*cols weights in both layouts
    for layout in (strided, contiguous):
        assert torch.bincount(layout.flatten().long(), minlength=R * C).tolist() == [block[0] * block[1]] * (R * C)


def test_bad_granularity_is_a_config_error():
    with pytest.raises(ConfigError, match="--granularity"):
        Granularity.parse("tiles")
    with pytest.raises(ConfigError, match="does not divide"):
        Granularity.parse("5,1").block((384, 384), 384)
