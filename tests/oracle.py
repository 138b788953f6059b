"""Reference implementations the tests hold the package against.

Written once, from the definitions (Louizos et al. 2018; Cao, Sanh & Rush 2021; conlleval), in plain
Python loops over scalars and nested lists: slow and obviously right. Nothing here imports
``subprobe``; the constants are the paper's numbers written out again, not the package's names, so a
wrong constant in the package shows up as a disagreement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# --- hard concrete (paper defaults) ------------------------------------------------------------

GAMMA = -0.1
ZETA = 1.1
BETA = 2.0 / 3.0
#: log-alpha at initialisation: sigmoid(log 5) = 5/6, stretched 5/6 * 1.2 - 0.1 = 0.9
INIT_LOG_ALPHA = math.log(5.0)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def clamp01(x: float) -> float:
    return min(1.0, max(0.0, x))


def stretch(s: float) -> float:
    """(0, 1) -> (gamma, zeta)."""
    return s * (ZETA - GAMMA) + GAMMA


def soft_mask(log_alpha: float) -> float:
    """The deterministic mask: clamp(sigmoid(la) * (zeta - gamma) + gamma, 0, 1)."""
    return clamp01(stretch(sigmoid(log_alpha)))


def hard_mask(log_alpha: float) -> float:
    """1 where the deterministic mask is >= 0.5, else 0."""
    return 1.0 if soft_mask(log_alpha) >= 0.5 else 0.0


def sample_mask(log_alpha: float, u: float) -> float:
    """The reparameterised hard-concrete sample for uniform noise ``u``."""
    return clamp01(stretch(sigmoid((math.log(u) - math.log(1.0 - u) + log_alpha) / BETA)))


def expected_l0(log_alpha: float) -> float:
    """P(z > 0) = sigmoid(la - beta * log(-gamma / zeta))."""
    return sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def soft_mask_tensor(log_alpha):
    """:func:`soft_mask` on a torch tensor, differentiably (for gradient references)."""
    return (log_alpha.sigmoid() * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def hard_mask_tensor(log_alpha):
    """:func:`hard_mask` on a torch tensor."""
    return (soft_mask_tensor(log_alpha) >= 0.5).to(log_alpha.dtype)


def flat(values) -> list[float]:
    """A tensor, array or nested list as a flat list of floats."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (int, float)):
        return [float(values)]
    out: list[float] = []
    for v in values:
        out.extend(flat(v))
    return out


def l0_penalty(log_alphas: Sequence, mode: str = "matrix-mean") -> float:
    """Expected L0: mean per matrix then over matrices (``matrix-mean``) or over all parameters (``param-mean``)."""
    per_matrix = [[expected_l0(a) for a in flat(la)] for la in log_alphas]
    if mode == "matrix-mean":
        return sum(sum(m) / len(m) for m in per_matrix) / len(per_matrix)
    if mode == "param-mean":
        return sum(sum(m) for m in per_matrix) / sum(len(m) for m in per_matrix)
    raise ValueError(mode)


def lambda_at(step: int, total: int, lambda_max: float = 1.0, start: float = 0.25, end: float = 0.75) -> float:
    """0 before ``start`` of training, linear up to ``lambda_max`` at ``end``, then constant."""
    frac = step / total
    if frac < start:
        return 0.0
    if frac >= end:
        return lambda_max
    return lambda_max * (frac - start) / (end - start)


# --- subnetwork counts -------------------------------------------------------------------------


def kept_weights(entries: Iterable) -> int:
    """Weights kept by the hard masks: every kept mask unit counts its block's rows x cols."""
    total = 0
    for e in entries:
        units = sum(hard_mask(a) for a in flat(e.log_alpha))
        total += int(units) * e.block[0] * e.block[1]
    return total


def density_by(entries: Sequence, key: str) -> dict[str, float]:
    """Kept / masked weights per ``layer`` or ``role`` (keys as strings)."""
    kept: dict[str, int] = {}
    size: dict[str, int] = {}
    for e in entries:
        k = str(getattr(e, key))
        kept[k] = kept.get(k, 0) + kept_weights([e])
        size[k] = size.get(k, 0) + e.shape[0] * e.shape[1]
    return {k: kept[k] / size[k] for k in size}


def agreement(a: Sequence, b: Sequence) -> float:
    """Fraction of mask units (not weights) on which two lists of entries' hard masks agree."""
    same = total = 0
    for ea, eb in zip(a, b, strict=True):
        for x, y in zip(flat(ea.log_alpha), flat(eb.log_alpha), strict=True):
            same += hard_mask(x) == hard_mask(y)
            total += 1
    return same / total


# --- complexity in bits ------------------------------------------------------------------------


def bits_subnetwork(mask_params: int) -> dict[str, float]:
    """One bit per mask parameter, for both bounds."""
    return {"lower": mask_params, "upper": mask_params}


def mlp1_params(d: int, rank: int) -> int:
    """Linear(d, r) + Linear(r, d) with biases, and LayerNorm(d) (weight and bias)."""
    return (d * rank + rank) + (rank * d + d) + 2 * d


def mlp1(x: Sequence[float], down_w, down_b, up_w, up_b, ln_w, ln_b, eps: float = 1e-5) -> list[float]:
    """MLP-1 on one vector: ReLU(LayerNorm(U (V x + b_V) + b_U)), with plain loops (weights as [out][in] lists)."""
    h = [sum(w * xi for w, xi in zip(row, x)) + b for row, b in zip(down_w, down_b)]
    y = [sum(w * hi for w, hi in zip(row, h)) + b for row, b in zip(up_w, up_b)]
    mean = sum(y) / len(y)
    var = sum((v - mean) ** 2 for v in y) / len(y)
    normed = [(v - mean) / math.sqrt(var + eps) * g + b for v, g, b in zip(y, ln_w, ln_b)]
    return [max(0.0, v) for v in normed]


def bits_dense(params: int) -> dict[str, float]:
    """MLP-1, linear probe, fine-tuning: 1 bit (lower) or 32 bits (upper) per parameter."""
    return {"lower": params, "upper": 32 * params}


# --- token accuracy ----------------------------------------------------------------------------


def token_accuracy(gold: Sequence[Sequence], pred: Sequence[Sequence]) -> tuple[float, float]:
    """(micro over all words, macro = mean of per-sentence accuracies over non-empty sentences)."""
    right = words = 0
    per_sentence = []
    for g, p in zip(gold, pred, strict=True):
        ok = 0
        for a, b in zip(g, p, strict=True):
            ok += int(a == b)
        right += ok
        words += len(g)
        if len(g):
            per_sentence.append(ok / len(g))
    micro = right / words if words else 0.0
    macro = sum(per_sentence) / len(per_sentence) if per_sentence else 0.0
    return micro, macro


# --- attachment scores -------------------------------------------------------------------------


def attachment(gold_heads, gold_rels, pred_heads, pred_rels, pred_rels_gold_head=None) -> dict[str, float]:
    """uas/las (token micro, label from the predicted head), paper_uas and paper_las (sentence macro,
    paper_las with the label predicted for the gold head)."""
    words = head_ok = label_ok = 0
    sent_uas, sent_las = [], []
    for s in range(len(gold_heads)):
        n = len(gold_heads[s])
        if n == 0:
            continue
        h = l_std = l_paper = 0
        for i in range(n):
            if int(gold_heads[s][i]) == int(pred_heads[s][i]):
                h += 1
                l_std += gold_rels[s][i] == pred_rels[s][i]
                if pred_rels_gold_head is not None:
                    l_paper += gold_rels[s][i] == pred_rels_gold_head[s][i]
        words += n
        head_ok += h
        label_ok += l_std
        sent_uas.append(h / n)
        sent_las.append(l_paper / n)
    out = {
        "uas": head_ok / words if words else 0.0,
        "las": label_ok / words if words else 0.0,
        "paper_uas": sum(sent_uas) / len(sent_uas) if sent_uas else 0.0,
    }
    if pred_rels_gold_head is not None:
        out["paper_las"] = sum(sent_las) / len(sent_las) if sent_las else 0.0
    return out


# --- NER chunks (conlleval rules, the same for IOB1 and IOB2) ----------------------------------


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (inclusive end) of one sentence.

    A tag ``X-T`` continues the open entity iff it is ``I-T`` and the open entity has type ``T``;
    otherwise it opens a new one (``B-T``, ``I-T`` after ``O`` or another type). ``O`` closes.
    """
    found: list[tuple[str, int, int]] = []
    open_type, open_start = None, 0
    for i, tag in enumerate(tags):
        prefix, typ = (tag[0], tag[2:]) if tag != "O" else ("O", None)
        if open_type is not None and (prefix != "I" or typ != open_type):
            found.append((open_type, open_start, i - 1))
            open_type = None
        if prefix != "O" and open_type is None:
            open_type, open_start = typ, i
    if open_type is not None:
        found.append((open_type, open_start, len(tags) - 1))
    return found


def entity_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> tuple[float, float, float]:
    """Micro (precision, recall, F1) over exact-match entities; 0 where undefined."""
    g = {(s, *c) for s, tags in enumerate(gold) for c in chunks(tags)}
    p = {(s, *c) for s, tags in enumerate(pred) for c in chunks(tags)}
    right = len(g & p)
    precision = right / len(p) if p else 0.0
    recall = right / len(g) if g else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
