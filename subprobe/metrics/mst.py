"""Maximum spanning tree decoding for dependency parsing (Chu-Liu-Edmonds, single root).

Scores are a ``(1+n) x (1+n)`` matrix indexed ``[dependent, head]``; position 0 is ROOT and
positions ``1..n`` are the words (CoNLL-U numbering). The decoder returns the highest-scoring
arborescence rooted at position 0 in which **exactly one word is attached to ROOT**, as UD
requires.

The single-root constraint is enforced exactly with the root-penalty construction: every
ROOT->word edge gets the same penalty ``R`` larger than the spread of any two trees' scores.
Every tree has at least one ROOT edge and a chain gives a tree with exactly one, so the
maximum spanning tree of the penalised matrix has exactly one ROOT edge, and among such trees
it maximises the original score (the penalty is the same constant for all of them). This needs
one Chu-Liu-Edmonds run, instead of one run per candidate root child.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mst_decode", "tree_score", "is_single_rooted_tree"]


def mst_decode(scores: np.ndarray, length: int) -> np.ndarray:
    """Decode the best single-rooted dependency tree.

    Args:
        scores: float array of shape at least ``(1+length, 1+length)``, ``scores[i, j]`` = score
            of word ``i`` taking head ``j`` (e.g. log-probabilities). Rows/columns beyond
            ``length`` (padding) are ignored, as are row 0 and the diagonal. ``-inf`` marks a
            forbidden edge; it is used only if no tree avoids it.
        length: number of words ``n`` (>= 0).

    Returns:
        int64 array of shape ``(1+length,)``: ``heads[i]`` is the head of word ``i`` (0 = ROOT);
        ``heads[0] = -1`` (ROOT has no head).
    """
    n = int(length)
    if n < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] < n + 1 or scores.shape[1] < n + 1:
        raise ValueError(f"scores of shape {scores.shape} do not cover {n} words plus ROOT")
    heads = np.full(n + 1, -1, dtype=np.int64)
    if n == 0:
        return heads
    if n == 1:
        heads[1] = 0
        return heads

    s = np.array(scores[: n + 1, : n + 1], dtype=np.float64)
    if np.isnan(s[1:]).any():
        raise ValueError("scores contain NaN")
    valid = np.ones_like(s, dtype=bool)
    valid[0, :] = False
    np.fill_diagonal(valid, False)
    finite = valid & np.isfinite(s)
    if np.isposinf(s[valid]).any():
        raise ValueError("scores contain +inf")
    if finite.any():
        lo, hi = float(s[finite].min()), float(s[finite].max())
    else:
        lo = hi = 0.0
    # Forbidden (-inf) edges become finite but worse than any tree that avoids them.
    forbidden_penalty = (n + 1) * (hi - lo + 1.0)
    s[valid & ~finite] = lo - forbidden_penalty
    lo2 = float(s[valid].min())
    # Root penalty: larger than the score spread of any two trees (n edges each).
    root_penalty = (n + 1) * (hi - lo2 + 1.0)
    s[1:, 0] -= root_penalty
    s[~valid] = -np.inf

    heads[:] = _chu_liu_edmonds(s)
    heads[0] = -1
    return heads


def tree_score(scores: np.ndarray, heads: np.ndarray) -> float:
    """Sum of ``scores[i, heads[i]]`` over words ``i = 1..n``."""
    heads = np.asarray(heads)
    idx = np.arange(1, len(heads))
    return float(np.asarray(scores)[idx, heads[1:]].sum())


def is_single_rooted_tree(heads: np.ndarray) -> bool:
    """True iff ``heads`` (position 0 = ROOT, ignored) is an arborescence with one ROOT child."""
    heads = np.asarray(heads)
    n = len(heads) - 1
    if n == 0:
        return True
    h = heads[1:]
    if (h < 0).any() or (h > n).any() or (h == np.arange(1, n + 1)).any():
        return False
    if int((h == 0).sum()) != 1:
        return False
    for start in range(1, n + 1):
        node, steps = start, 0
        while node != 0:
            node = int(heads[node])
            steps += 1
            if steps > n:
                return False
    return True


def _find_cycle(heads: np.ndarray) -> np.ndarray | None:
    """Return the nodes of one cycle in the head graph (node 0 has no head), or None."""
    n = len(heads)
    state = np.zeros(n, dtype=np.int8)  # 0 unvisited, 1 on current path, 2 done
    state[0] = 2
    for start in range(1, n):
        if state[start]:
            continue
        path = []
        node = start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = int(heads[node])
        if state[node] == 1:  # closed a cycle on the current path
            cycle = path[path.index(node) :]
            for v in path:
                state[v] = 2
            return np.asarray(cycle, dtype=np.int64)
        for v in path:
            state[v] = 2
    return None


def _chu_liu_edmonds(s: np.ndarray) -> np.ndarray:
    """Maximum arborescence rooted at node 0 of a dense score matrix ``s[dep, head]``.

    ``s`` must have ``-inf`` on row 0 and the diagonal and be finite elsewhere. Recursive
    contraction; each level costs O(m^2) numpy work.
    """
    m = s.shape[0]
    heads = s.argmax(axis=1)
    heads[0] = -1
    cycle = _find_cycle(heads)
    if cycle is None:
        return heads

    in_cycle = np.zeros(m, dtype=bool)
    in_cycle[cycle] = True
    rest = np.flatnonzero(~in_cycle)  # includes node 0, which stays first
    k = len(rest)
    cycle_edge = s[cycle, heads[cycle]]  # score of each cycle node's current head

    sub = np.full((k + 1, k + 1), -np.inf)
    sub[:k, :k] = s[np.ix_(rest, rest)]
    # Entering the cycle at c from outside head h replaces c's cycle edge.
    enter = s[np.ix_(cycle, rest)] - cycle_edge[:, None]  # [|cycle|, k]
    enter_at = enter.argmax(axis=0)
    sub[k, :k] = enter[enter_at, np.arange(k)]
    # Leaving the cycle: dependent d outside takes its best head inside the cycle.
    leave = s[np.ix_(rest, cycle)]  # [k, |cycle|]
    leave_from = leave.argmax(axis=1)
    sub[:k, k] = leave[np.arange(k), leave_from]
    sub[0, :] = -np.inf

    sub_heads = _chu_liu_edmonds(sub)

    out = heads.copy()  # cycle nodes keep their cycle heads except the entry point
    for i in range(1, k):
        h = sub_heads[i]
        out[rest[i]] = cycle[leave_from[i]] if h == k else rest[h]
    h = sub_heads[k]
    out[cycle[enter_at[h]]] = rest[h]
    out[0] = -1
    return out
