"""Every supported family, on a tiny random model built offline: discovery finds all six roles (fused
matrices split per role), masks at 1 reproduce the Hugging Face model, a hard mask equals the model
with those weights zeroed (row layouts written out here by hand, independently of the code), and a
1-epoch UPOS run trains on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from subprobe.errors import ConfigError
from subprobe.masking.layouts import Granularity, expand_mask
from subprobe.masking.subnetwork import Subnetwork, install_masks, set_mask_mode
from subprobe.models.targets import discover
from tests.tiny_families import FAMILIES, FF, NH, H, build_family

HD = H // NH  # head size
KV = 2  # key/value heads of the GQA decoders


@pytest.fixture(scope="module")
def family_path(tmp_path_factory):
    built = {}

    def get(model_type: str):
        if model_type not in built:
            built[model_type] = build_family(tmp_path_factory.mktemp(model_type), model_type)
        return built[model_type]

    return get


def load(path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path, attn_implementation="eager")
    return model.eval().requires_grad_(False)


def hidden(model, ids):
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def expected_rows(model_type: str, module: str, label: str) -> list[int]:
    """Rows (of the out x in weight) of each role slice of a fused matrix, from the transformers source."""
    if model_type in ("gpt2", "modernbert") and module.endswith(("c_attn", "Wqkv")):  # [q | k | v]
        i = "qkv".index(label)
        return list(range(i * H, (i + 1) * H))
    if model_type == "gpt_neox":  # [h0: q k v][h1: q k v] ...
        i = "qkv".index(label)
        return [h * 3 * HD + i * HD + r for h in range(NH) for r in range(HD)]
    if model_type == "phi3" and module.endswith("qkv_proj"):  # [q | k | v] with GQA sizes
        start = {"q": 0, "k": H, "v": H + KV * HD}[label]
        return list(range(start, start + (H if label == "q" else KV * HD)))
    if module.endswith(("gate_up_proj", "Wi")):  # [gate | up], [input | gate]
        first = label in ("gate", "input") if module.endswith("gate_up_proj") else label == "input"
        if module.endswith("gate_up_proj"):
            first = label == "gate"
        return list(range(0, FF)) if first else list(range(FF, 2 * FF))
    raise AssertionError(f"no layout for {model_type} {module}[{label}]")


EXPECTED_MATRICES = {  # matrices per block: 6 roles, Llama-likes have gate and up, DeBERTa position projections
    "deberta-v2": 8, "modernbert": 7, "llama": 7, "mistral": 7, "qwen2": 7, "gemma": 7, "phi3": 7,
}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_every_projection_is_masked_per_role(model_type, family_path):
    model = load(family_path(model_type))
    found = discover(model, model_type)
    assert found.coverage == 1.0 and not found.missing and not found.unmasked
    assert len(found.targets) == 2 * EXPECTED_MATRICES.get(model_type, 6)
    for layer in (0, 1):
        roles = [t.role for t in found.targets if t.layer == layer]
        assert set(roles) == {"q", "k", "v", "o", "ffn_in", "ffn_out"}
    assert found.masked_weights == sum(
        m.weight.numel() for n, m in model.named_modules() if n and hasattr(m, "weight") and m.weight.dim() == 2
        and any(n.startswith(f"{found.blocks}.{i}.") for i in (0, 1))
    )


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_masks_match_hugging_face(model_type, granularity, family_path):
    path = family_path(model_type)
    reference, model = load(path), load(path)
    ids = torch.randint(5, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    masked = install_masks(model, discover(model, model_type).targets, Granularity.parse(granularity), "strided", H)
    set_mask_mode(model, "hard")
    with torch.no_grad():  # every mask at 1: the model itself
        for m in masked:
            m.log_alpha.fill_(10.0)
        torch.testing.assert_close(hidden(model, ids), hidden(reference, ids), atol=1e-5, rtol=0)
        gen = torch.Generator().manual_seed(1)
        for m in masked:  # drop about a third of the units
            m.log_alpha.copy_(torch.where(torch.rand(m.log_alpha.shape, generator=gen) < 0.35, -10.0, 10.0))
        full: dict[str, torch.Tensor] = {}
        for m in masked:  # the same mask written into the original weights, by hand
            module = reference.get_submodule(m.module_name)
            conv1d = type(module).__name__ == "Conv1D"
            out_in = module.weight.t() if conv1d else module.weight
            mask = full.setdefault(m.module_name, torch.full(out_in.shape, float("nan")))
            label = m.name[m.name.index("[") + 1 : -1] if "[" in m.name else None
            rows = expected_rows(model_type, m.module_name, label) if label else list(range(out_in.shape[0]))
            assert torch.isnan(mask[rows]).all()  # no row is masked twice
            mask[rows] = expand_mask((m.log_alpha > 0).float(), m.block, "strided")
        for name, mask in full.items():
            assert not torch.isnan(mask).any()  # every row of every matrix is masked
            module = reference.get_submodule(name)
            module.weight.mul_(mask.t() if type(module).__name__ == "Conv1D" else mask)
        torch.testing.assert_close(hidden(model, ids), hidden(reference, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["gpt2", "gpt_neox", "phi3"])
def test_fused_subnetwork_saves_and_applies(model_type, family_path, tmp_path):
    path = family_path(model_type)
    model, fresh = load(path), load(path)
    ids = torch.randint(5, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(2))
    masked = install_masks(model, discover(model, model_type).targets, Granularity.parse("weight"), "strided", H)
    torch.manual_seed(3)
    with torch.no_grad():
        for m in masked:
            m.log_alpha.normal_(0, 3)
    set_mask_mode(model, "hard")
    sub = Subnetwork.from_modules(masked, "weight")
    sub.save(tmp_path / "masks.safetensors")
    loaded = Subnetwork.load(tmp_path / "masks.safetensors")
    assert [(e.name, e.module, e.rows) for e in loaded.entries] == [(e.name, e.module, e.rows) for e in sub.entries]
    loaded.apply(fresh)
    with torch.no_grad():
        torch.testing.assert_close(hidden(fresh, ids), hidden(model, ids), atol=0, rtol=0)
    assert loaded.density_by("role").keys() == {"q", "k", "v", "o", "ffn_in", "ffn_out"}


def _gpt_neo(path):
    from transformers import CONFIG_MAPPING, AutoModel

    config = CONFIG_MAPPING["gpt_neo"](hidden_size=H, num_layers=2, num_heads=NH, intermediate_size=FF,
                                       attention_types=[[["global"], 2]], vocab_size=50, max_position_embeddings=32)
    return AutoModel.from_config(config).eval()


def test_unknown_family_is_discovered_from_names():
    model = _gpt_neo(None)
    found = discover(model, "not-a-known-type")
    assert found.coverage == 1.0 and not found.missing
    roles = {t.name.split(".", 2)[2]: t.role for t in found.targets if t.layer == 0}
    assert roles == {"attn.attention.q_proj": "q", "attn.attention.k_proj": "k", "attn.attention.v_proj": "v",
                     "attn.attention.out_proj": "o", "mlp.c_fc": "ffn_in", "mlp.c_proj": "ffn_out"}
    assert len(found.notes) == 1 and "not a known family" in found.notes[0] and "\n" not in found.notes[0]


def test_partial_coverage_stops_unless_allowed(family_path):
    model = load(family_path("opt"))
    with pytest.raises(ConfigError) as err:
        discover(model, "opt", target_modules="q_proj,k_proj,v_proj")
    message = str(err.value)
    assert "layers 0-1 have no o, ffn_in, ffn_out" in message and "--allow-partial" in message
    found = discover(model, "opt", target_modules="q_proj,k_proj,v_proj", allow_partial=True)
    assert found.masked_weights == 2 * 3 * H * H and found.block_weights == 2 * (4 * H * H + 2 * H * FF)
    assert found.coverage_dict()["missing_roles"] == {"0": ["o", "ffn_in", "ffn_out"], "1": ["o", "ffn_in", "ffn_out"]}


def test_target_modules_assign_roles(family_path):
    model = load(family_path("gpt2"))
    found = discover(model, "gpt2", target_modules=r"h\.\d+\.attn\.c_attn=other,c_fc,mlp.c_proj", allow_partial=True)
    assert [(t.name, t.role) for t in found.targets if t.layer == 0] == [
        ("h.0.mlp.c_fc", "ffn_in"), ("h.0.mlp.c_proj", "ffn_out"), ("h.0.attn.c_attn", "other")
    ]
    assert found.unmasked == ["h.0.attn.c_proj", "h.1.attn.c_proj"]
    with pytest.raises(ConfigError, match="role 'query' is not known"):
        discover(model, "gpt2", target_modules="c_attn=query")


def test_byte_level_words_get_a_prefix_space_and_decoders_a_bos(family_path):
    from subprobe.models.loading import load_encoder
    from subprobe.models.tokenization import root_prefix_id

    _, tok = load_encoder(str(family_path("gpt2")))
    ids = tok([["the", "dog"]], is_split_into_words=True).input_ids[0]
    assert tok.convert_ids_to_tokens(ids) == ["Ġthe", "Ġdog"]  # as "dog" in running text
    assert tok.convert_ids_to_tokens(tok(" the dog").input_ids) == ["Ġthe", "Ġdog"]
    assert root_prefix_id(tok) == tok.convert_tokens_to_ids("<s>") or root_prefix_id(tok) == tok.bos_token_id
    _, llama_tok = load_encoder(str(family_path("llama")))
    assert root_prefix_id(llama_tok) is None  # adds <s> itself
    _, bert_tok = load_encoder(str(family_path("bert")))
    assert root_prefix_id(bert_tok) is None  # [CLS]


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_one_epoch_upos_on_cpu(model_type, family_path, tiny_ud, tmp_path):
    from subprobe.cli import main
    from tests.conftest import probe_argv

    out = tmp_path / "run"
    argv = probe_argv(family_path(model_type), tiny_ud, out, "--device", "cpu", epochs=1, batch_size=8, eval_every=50)
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coverage"]["fraction"] == 1.0 and metrics["coverage"]["missing_roles"] == {}
    assert metrics["train"]["steps"] == 3 and 0.0 <= metrics["dev"]["accuracy"] <= 1.0
    assert set(metrics["density_by_role"]) == {"q", "k", "v", "o", "ffn_in", "ffn_out"}


def test_decoder_words_are_their_last_subword_and_slot_0_is_bos(family_path):
    from subprobe.data.batching import collate, encode_dataset
    from subprobe.data.records import Sentence
    from subprobe.models.loading import load_encoder
    from subprobe.models.tokenization import root_prefix_id

    _, tok = load_encoder(str(family_path("gpt2")))
    words = ["the", "unbelievable", "dog"]
    prepend = root_prefix_id(tok)
    assert prepend == tok.bos_token_id
    ds = encode_dataset("t", [Sentence(words=words)], tok, 64, prepend_id=prepend)
    auto = encode_dataset("t", [Sentence(words=words)], tok, 64)  # the default finds the same BOS
    assert auto.encoded[0].input_ids.tolist() == ds.encoded[0].input_ids.tolist()
    e = ds.encoded[0]
    pieces = [tok([[w]], is_split_into_words=True).input_ids[0] for w in words]
    assert e.input_ids.tolist() == [prepend] + [i for p in pieces for i in p]
    assert len(pieces[1]) > 1  # a word of several subwords
    e.labels = {}
    batch = collate(ds.encoded, [0], "last", 0)
    ends = [1 + sum(len(p) for p in pieces[: k + 1]) - 1 for k in range(3)]
    assert batch.word_index[0].tolist() == [0, *ends]  # slot 0 = the BOS state, then each word's last subword


def test_dep_on_a_decoder_uses_the_bos_state_as_root(family_path, tiny_ud, tmp_path, capsys):
    from subprobe.cli import main
    from tests.conftest import probe_argv

    out = tmp_path / "dep"
    argv = probe_argv(family_path("gpt_neox"), tiny_ud, out, "--device", "cpu", "--arc-dim", "16", "--label-dim", "8",
                      task="dep", epochs=1, batch_size=8, eval_every=50)
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["dev"]["uas"] <= 1.0
    capsys.readouterr()
    argv = probe_argv(family_path("gpt2"), tiny_ud, tmp_path / "first", "--word-pooling", "first", "--device", "cpu",
                      epochs=1, batch_size=8, eval_every=50)
    assert main(argv) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "left-to-right" in line]
    assert len(notes) == 1 and "--word-pooling first" in notes[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model_type", ["gpt2", "gpt_neox", "phi3", "llama", "bert"])
def test_masked_families_on_cuda_match_hugging_face(model_type, family_path):
    path = family_path(model_type)
    reference, model = load(path).cuda(), load(path)
    masked = install_masks(model, discover(model, model_type).targets, Granularity.parse("neuron"), "strided", H)
    model.cuda()
    set_mask_mode(model, "hard")
    ids = torch.randint(5, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        for m in masked:
            m.log_alpha.fill_(10.0)
        torch.testing.assert_close(hidden(model, ids), hidden(reference, ids), atol=1e-4, rtol=1e-4)


def test_dry_run_prints_coverage_and_partial_is_one_error_line(family_path, capsys):
    from subprobe.cli import main

    path = str(family_path("gpt2"))
    assert main(["probe", "--model", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "h.0.attn.c_attn[q]" in out and "h.1.attn.c_attn[v]" in out
    assert "coverage 100.0%: 16,384 masked weights / 16,384 projection weights in 2 blocks (h.N, family gpt2)" in out
    assert main(["probe", "--model", path, "--dry-run", "--target-modules", "c_fc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "layers 0-1 have no q, k, v, o, ffn_out" in err and "--allow-partial" in err
    assert main(["probe", "--model", path, "--dry-run", "--target-modules", "c_fc", "--allow-partial"]) == 0
    assert "coverage 25.0%: 4,096 masked weights / 16,384" in capsys.readouterr().out
    assert main(["probe", "--model", path, "--probe", "mlp", "--allow-partial"]) == 2
    assert "--allow-partial only applies to --probe subnetwork" in capsys.readouterr().err
