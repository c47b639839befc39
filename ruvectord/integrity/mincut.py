"""Exact global minimum cut and algebraic connectivity of the integrity graph.

Owns the graph arithmetic behind the integrity signal: the Stoer-Wagner minimum cut (made fast by
exact Padberg-Rinaldi contraction before igraph's C implementation runs), the health-normalised
cut ``lambda_cut`` and the Laplacian's second eigenvalue. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import igraph
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
from numpy.typing import NDArray

__all__ = ["LambdaCut", "MinCut", "algebraic_connectivity", "lambda_cut", "min_cut"]


@dataclass(frozen=True, slots=True)
class MinCut:
    """A global minimum cut of an undirected capacitated graph."""

    value: float
    """Minimum cut value: ``math.fsum`` of the witness capacities."""
    side: frozenset[int]
    """Node indices on one side: a proper, non-empty subset of ``range(num_nodes)``. The smaller
    side; on a tie in size, the side holding node 0."""
    witness: tuple[int, ...]
    """Indices into ``edges`` of every edge crossing the cut, ascending."""
    connected: bool
    """False when the edge set leaves the graph disconnected (then ``value == 0.0``)."""


@dataclass(frozen=True, slots=True)
class LambdaCut:
    """Minimum cut over effective capacities, normalised by the structural cut."""

    raw: float
    """Minimum cut value over effective capacities."""
    unit: float
    """Minimum cut value of the same graph with every capacity at its structural weight."""
    normalised: float
    """``raw / unit`` clamped to [0, 1]; 0.0 when disconnected or ``unit`` is 0."""
    cut: MinCut
    """The minimum cut over effective capacities; its witness explains ``raw``."""


def min_cut(
    num_nodes: int, edges: Sequence[tuple[int, int]], capacities: Sequence[float]
) -> MinCut:
    """Exact global minimum cut (Stoer-Wagner semantics) of an undirected multigraph.

    Parallel edges add their capacities; self-loops never cross a cut; zero capacities are
    allowed. When some cut has value 0 because the edges (or just the positive-capacity edges)
    leave the graph in pieces, ``side`` is the smallest such piece, ties going to the piece with
    the smallest node index. Raises ``ValueError`` on ``num_nodes < 2``, mismatched lengths,
    out-of-range nodes and negative or non-finite capacities.
    """
    pairs, caps = _validate(num_nodes, edges, capacities, "capacities")
    side = _contract_and_cut(num_nodes, pairs, caps)
    if side is not None:
        return _finish(num_nodes, pairs, caps, side, connected=True)

    # Some cut has value 0. Either the edge set leaves the graph disconnected, or it is connected
    # only through zero-capacity edges; either way report a whole component.
    labels, count = _components(num_nodes, pairs, None)
    if count > 1:
        return _finish(num_nodes, pairs, caps, _pick_component(labels, count), connected=False)
    labels, count = _components(num_nodes, pairs, caps)
    return _finish(num_nodes, pairs, caps, _pick_component(labels, count), connected=True)


def lambda_cut(
    num_nodes: int,
    edges: Sequence[tuple[int, int]],
    effective: Sequence[float],
    unit: Sequence[float],
) -> LambdaCut:
    """Minimum cut over ``effective`` capacities normalised by the cut over ``unit`` weights.

    ``unit[i]`` is edge i's structural weight (its effective capacity when perfectly healthy), so
    a fully healthy graph scores 1.0 and a disconnected one 0.0.
    """
    if len(effective) != len(edges):
        raise ValueError(
            f"effective has {len(effective)} entries but edges has {len(edges)}; "
            "need one capacity per edge"
        )
    if len(unit) != len(edges):
        raise ValueError(
            f"unit has {len(unit)} entries but edges has {len(edges)}; need one weight per edge"
        )
    raw_cut = min_cut(num_nodes, edges, effective)
    unit_cut = _unit_cut(num_nodes, tuple(map(tuple, edges)), tuple(unit))
    if not raw_cut.connected or unit_cut.value <= 0.0:
        normalised = 0.0
    else:
        normalised = min(1.0, max(0.0, raw_cut.value / unit_cut.value))
    return LambdaCut(raw=raw_cut.value, unit=unit_cut.value, normalised=normalised, cut=raw_cut)


@functools.lru_cache(maxsize=64)
def _unit_cut(
    num_nodes: int, edges: tuple[tuple[int, int], ...], unit: tuple[float, ...]
) -> MinCut:
    """The normaliser's cut: it depends on the graph's shape only, which a collection keeps from
    one sample to the next, so it is computed once per shape (a few per collection)."""
    return min_cut(num_nodes, edges, unit)


def algebraic_connectivity(
    num_nodes: int,
    edges: Sequence[tuple[int, int]],
    weights: Sequence[float],
    *,
    dense_limit: int = 400,
) -> float:
    """Second-smallest eigenvalue (lambda2) of the weighted graph Laplacian.

    Parallel edges add, self-loops are ignored, a disconnected graph gives 0.0. Dense
    ``eigvalsh`` up to ``dense_limit`` nodes, sparse Lanczos beyond (dense if that fails).
    """
    pairs, caps = _validate(num_nodes, edges, weights, "weights")
    _, count = _components(num_nodes, pairs, caps)
    if count > 1:
        return 0.0

    keep = [i for i, (u, v) in enumerate(pairs) if u != v and caps[i] > 0.0]
    rows = np.fromiter((pairs[i][0] for i in keep), dtype=np.int64, count=len(keep))
    cols = np.fromiter((pairs[i][1] for i in keep), dtype=np.int64, count=len(keep))
    vals = np.fromiter((caps[i] for i in keep), dtype=np.float64, count=len(keep))
    if num_nodes <= dense_limit:
        # straight into a dense matrix: scipy.sparse's conversions cost more than the
        # eigensolver itself at the sizes a contracted graph has
        dense = np.zeros((num_nodes, num_nodes))
        np.add.at(dense, (rows, cols), vals)
        np.add.at(dense, (cols, rows), vals)
        dense[np.diag_indices(num_nodes)] = -dense.sum(axis=1)
        return max(0.0, _dense_lambda2(-dense))
    adjacency = scipy.sparse.coo_matrix(
        (
            np.concatenate([vals, vals]),
            (np.concatenate([rows, cols]), np.concatenate([cols, rows])),
        ),
        shape=(num_nodes, num_nodes),
    ).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    laplacian = (scipy.sparse.diags(degree) - adjacency).tocsc()

    sparse_value = _sparse_lambda2(laplacian)
    if sparse_value is not None:
        return max(0.0, sparse_value)
    return max(0.0, _dense_lambda2(laplacian.toarray()))


# --- validation and components ---------------------------------------------------------------


def _validate(
    num_nodes: int,
    edges: Sequence[tuple[int, int]],
    capacities: Sequence[float],
    what: str,
) -> tuple[list[tuple[int, int]], list[float]]:
    if num_nodes < 2:
        raise ValueError(f"num_nodes must be at least 2, got {num_nodes}")
    if len(edges) != len(capacities):
        raise ValueError(
            f"len(edges) == {len(edges)} but len({what}) == {len(capacities)}; "
            "need one value per edge"
        )
    pairs: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(edges):
        u, v = operator.index(a), operator.index(b)
        if not (0 <= u < num_nodes and 0 <= v < num_nodes):
            raise ValueError(
                f"edge {i} = ({u}, {v}) has a node index out of range [0, {num_nodes})"
            )
        pairs.append((u, v))
    caps = list(map(float, capacities))
    # One C-level pass for the common all-valid case: sum() propagates nan and inf.
    if caps and not (min(caps) >= 0.0 and math.isfinite(sum(caps))):
        for i, c in enumerate(caps):
            if not math.isfinite(c):
                raise ValueError(f"{what}[{i}] = {c} is not finite")
            if c < 0.0:
                raise ValueError(f"{what}[{i}] = {c} is negative")
    return pairs, caps


def _components(
    num_nodes: int, pairs: list[tuple[int, int]], caps: list[float] | None
) -> tuple[list[int], int]:
    """Component labels numbered in order of each component's smallest node.

    With ``caps`` given, only edges of positive capacity join nodes.
    """
    parent = list(range(num_nodes))
    for i, (u, v) in enumerate(pairs):
        if caps is not None and caps[i] <= 0.0:
            continue
        # Path halving keeps the trees shallow without recursion.
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        if u != v:
            # The smaller index stays root, so roots are each component's smallest node.
            if u < v:
                parent[v] = u
            else:
                parent[u] = v
    labels = [0] * num_nodes
    label_of_root: dict[int, int] = {}
    for x in range(num_nodes):
        r = x
        while parent[r] != r:
            r = parent[r]
        parent[x] = r
        label = label_of_root.get(r)
        if label is None:
            label = label_of_root[r] = len(label_of_root)
        labels[x] = label
    return labels, len(label_of_root)


def _pick_component(labels: list[int], count: int) -> list[int]:
    """Nodes of the smallest component; ties go to the one with the smallest node."""
    sizes = [0] * count
    for label in labels:
        sizes[label] += 1
    chosen = min(range(count), key=lambda k: (sizes[k], k))
    return [x for x, label in enumerate(labels) if label == chosen]


def _finish(
    num_nodes: int,
    pairs: list[tuple[int, int]],
    caps: list[float],
    side_nodes: Sequence[int],
    *,
    connected: bool,
) -> MinCut:
    in_side = bytearray(num_nodes)
    for x in side_nodes:
        in_side[x] = 1
    size = len(side_nodes)
    # Canonical side: the smaller one, or the one holding node 0 on a tie.
    if 2 * size > num_nodes or (2 * size == num_nodes and not in_side[0]):
        in_side = bytearray(1 - b for b in in_side)
    witness = tuple(i for i, (u, v) in enumerate(pairs) if in_side[u] != in_side[v])
    side = frozenset(x for x in range(num_nodes) if in_side[x])
    value = math.fsum(caps[i] for i in witness) if connected else 0.0
    return MinCut(value=value, side=side, witness=witness, connected=connected)


# --- Padberg-Rinaldi contraction + Stoer-Wagner -----------------------------------------------
#
# Notation: c(u, v) is the summed capacity between (contracted) nodes u and v, d(u) the weighted
# degree of u, lambda the minimum cut value and `best` the smallest star cut d(x) recorded so far
# over every node x that existed at any stage, so lambda <= best always. Contracting u and v keeps
# every cut that does not separate them, so contraction is exact whenever some minimum cut either
# does not separate u and v or is already recorded as the `best` star. Each rule shows that:
#
# PR1  c(u, v) >= best. A cut separating u and v costs at least c(u, v) >= best >= lambda, so if
#      it is minimum then best == lambda and the recorded star is a minimum cut.
# PR2  2 c(u, v) >= d(u) (symmetrically d(v)). Let S be a minimum cut with u in S and v outside.
#      Moving u across changes the cut by c(u, S - u) - c(u, V - S) <= (d(u) - c(u, v)) - c(u, v)
#      <= 0, so S - u is a cut no worse than S that keeps u with v, unless S == {u}, which is the
#      star d(u) and already recorded. Nodes with one or two neighbours always pass this test.
# PR3  c(u, v) + sum over common neighbours w of min(c(u, w), c(v, w)) >= best. A cut separating
#      u and v cuts (u, v) and, for each common w, one of (u, w) or (v, w); so it costs at least
#      the left side and the PR1 argument applies.
# PR4  a common neighbour w with 2 (c(u, v) + c(u, w)) >= d(u) and 2 (c(u, v) + c(v, w)) >= d(v).
#      Let S be a minimum cut with u in S and v outside. If w is outside S, u has at least
#      c(u, v) + c(u, w) >= d(u) / 2 crossing, so moving u across is no worse (PR2 argument);
#      if w is in S, the same holds for v. Either way some no-worse cut keeps u with v or is a
#      recorded star.
#
# Floating-point degrees are updated incrementally; rounding can at worst make the chosen cut
# exceed the optimum by a few ulps of the total capacity, and the reported value is always the
# exact fsum of a real cut.

# Up to this many nodes igraph alone beats any Python-side reduction.
_DIRECT_MAX_NODES = 32

# Triangle sweeps run once plain sweeps stall, at or above this many surviving nodes. They
# cost about a plain sweep and collapse random weighted graphs that plain sweeps barely touch, so
# measured they pay at every size the reduction runs at; the knob stays for tests.
_TRIANGLE_MIN_NODES = 0


def _contract_and_cut(
    num_nodes: int, pairs: list[tuple[int, int]], caps: list[float]
) -> list[int] | None:
    """Side of a minimum cut, or None when positive-capacity edges leave the graph disconnected.

    Contraction only ever merges the two ends of a positive edge, so components survive it and
    the reduced graph's cut (zero exactly when it is disconnected) settles connectivity too.
    """
    # igraph only ever sees positive capacities: its Stoer-Wagner stops at the first phase cut of
    # exactly 0 and then indexes past its merge history, which corrupts the heap or segfaults
    # (igraph 1.0: a path 0-1-2-3 with capacities 1, 0, 1 crashes). A positive-capacity graph
    # has no zero phase cut unless disconnected, which igraph checks before any phase.
    if num_nodes <= _DIRECT_MAX_NODES:
        keep = [i for i, (u, v) in enumerate(pairs) if u != v and caps[i] > 0.0]
        value, side = _stoer_wagner(num_nodes, [pairs[i] for i in keep], [caps[i] for i in keep])
        return side if value > 0.0 else None

    adj: list[dict[int, float]] = [{} for _ in range(num_nodes)]
    for (u, v), c in zip(pairs, caps, strict=True):
        if u == v or c <= 0.0:
            continue
        row = adj[u]
        total = row.get(v, 0.0) + c
        row[v] = total
        adj[v][u] = total
    deg = [math.fsum(row.values()) for row in adj]
    best_rep = min(range(num_nodes), key=deg.__getitem__)
    best = deg[best_rep]
    if best <= 0.0:
        return None

    live = bytearray(b"\x01") * num_nodes
    alive = num_nodes
    # (survivor, absorbed) pairs in merge order. A recorded star is (node, log length): replaying
    # that prefix recovers its members in O(n) however often `best` improves.
    log: list[tuple[int, int]] = []
    best_at = 0

    def merge(a: int, b: int) -> tuple[int, dict[int, float]]:
        """Contract edge (a, b); return the survivor and the absorbed node's old adjacency."""
        nonlocal best, best_rep, best_at, alive
        # Fold the smaller adjacency into the larger so hub absorption stays O(m log n) overall.
        if len(adj[a]) < len(adj[b]):
            a, b = b, a
        row_a, row_b = adj[a], adj[b]
        c_ab = row_a.pop(b)
        del row_b[a]
        for w, c in row_b.items():
            row_w = adj[w]
            del row_w[b]
            total = row_a.get(w, 0.0) + c
            row_a[w] = total
            row_w[a] = total
        adj[b] = {}
        live[b] = 0
        deg[a] = deg[a] + deg[b] - 2.0 * c_ab
        alive -= 1
        log.append((a, b))
        # The last node standing is the whole graph, not a cut.
        if alive >= 2 and deg[a] < best:
            best, best_rep, best_at = deg[a], a, len(log)
        return a, row_b

    def triangle_rule(u: int, v: int, c_uv: float) -> bool:
        row_u, row_v = adj[u], adj[v]
        if len(row_u) > len(row_v):
            row_u, row_v = row_v, row_u
            u, v = v, u
        bound = c_uv
        need_u = 0.5 * deg[u] - c_uv
        need_v = 0.5 * deg[v] - c_uv
        for w, c_uw in row_u.items():
            c_vw = row_v.get(w)
            if c_vw is None:
                continue
            if c_uw >= need_u and c_vw >= need_v:
                return True
            bound += c_uw if c_uw < c_vw else c_vw
            if bound >= best:
                return True
        return False

    def sweep(triangles: bool) -> None:
        # Triangle tests either fire early and cascade or hardly fire at all (sparse unit-weight
        # graphs with few triangles), so a triangle sweep that contracts nothing over its first
        # eighth of the nodes gives up rather than pay for the rest.
        give_up_at = max(16, num_nodes // 8) if triangles else num_nodes
        alive_at_start = alive
        for start in range(num_nodes):
            if start == give_up_at and alive == alive_at_start:
                return
            if not adj[start]:
                continue
            u = start
            todo = list(adj[u])
            # Entries from index `changed` on have new capacities. An older entry with v < u was
            # already tested from v earlier in this sweep, so the costly triangle test skips it.
            changed = len(todo)
            i = 0
            while i < len(todo):
                v = todo[i]
                i += 1
                c = adj[u].get(v)
                if c is None:
                    continue
                if (
                    c >= best
                    or 2.0 * c >= deg[u]
                    or 2.0 * c >= deg[v]
                    or (triangles and (u < v or i > changed) and triangle_rule(u, v, c))
                ):
                    survivor, absorbed = merge(u, v)
                    if alive < 2:
                        return
                    # Only edges to the absorbed node's neighbours changed capacity; if u itself
                    # was absorbed, the rest of `todo` is exactly those edges.
                    if survivor == u:
                        todo.extend(absorbed)
                    else:
                        u = survivor
                        changed = min(changed, i)

    triangles = False
    lean = 0
    while alive >= 2:
        before, best_before = alive, best
        sweep(triangles)
        gained = before - alive
        # Another sweep pays while it still removes a few nodes: each one saves igraph a whole
        # phase, and demanding a fixed fraction roughly bounds the sweeps' total cost by a geometric
        # series. A drop in `best` re-arms PR1 on edges already passed over, which earns at
        # most two extra sweeps in a row.
        if gained >= max(4, before // 32):
            lean = 0
            continue
        if best < best_before and lean < 2:
            lean += 1
            continue
        if triangles or alive < _TRIANGLE_MIN_NODES:
            break
        triangles = True
        lean = 0

    if alive >= 2:
        reps = [x for x in range(num_nodes) if live[x]]
        index = {r: k for k, r in enumerate(reps)}
        g_edges: list[tuple[int, int]] = []
        g_caps: list[float] = []
        for r in reps:
            k = index[r]
            for w, c in adj[r].items():
                j = index[w]
                if k < j:
                    g_edges.append((k, j))
                    g_caps.append(c)
        value, reduced_side = _stoer_wagner(len(reps), g_edges, g_caps)
        if value <= 0.0:
            return None
        if value < best:
            roots = _roots(num_nodes, log, len(log))
            chosen = bytearray(num_nodes)
            for k in reduced_side:
                chosen[reps[k]] = 1
            return [x for x in range(num_nodes) if chosen[roots[x]]]

    roots = _roots(num_nodes, log, best_at)
    return [x for x in range(num_nodes) if roots[x] == best_rep]


def _stoer_wagner(
    num_nodes: int, edges: list[tuple[int, int]], caps: list[float]
) -> tuple[float, list[int]]:
    """igraph's Stoer-Wagner: the cut value and one side. Every capacity must be positive."""
    # GraphBase skips the Cut / VertexClustering wrappers Graph.mincut builds around the result.
    value, _, side, _ = igraph.GraphBase(num_nodes, edges).mincut(None, None, caps)
    return float(value), list(side)


def _roots(num_nodes: int, log: list[tuple[int, int]], upto: int) -> list[int]:
    """Representative of every node after replaying the first `upto` merges."""
    parent = list(range(num_nodes))
    for a, b in log[:upto]:
        parent[b] = a
    for x in range(num_nodes):
        r = x
        while parent[r] != r:
            r = parent[r]
        while parent[x] != r:
            parent[x], x = r, parent[x]
    return parent


# --- algebraic connectivity --------------------------------------------------------------------


def _dense_lambda2(laplacian: NDArray[np.float64]) -> float:
    values = scipy.linalg.eigvalsh(laplacian, subset_by_index=[1, 1])
    return float(values[0])


def _sparse_lambda2(laplacian: scipy.sparse.csc_matrix) -> float | None:
    """lambda2 as 1 / the largest eigenvalue of the Laplacian's pseudo-inverse, or None.

    For b orthogonal to the all-ones vector, L x = b is solved exactly by pinning x[0] = 0 and
    factoring the grounded (positive definite, since connected) Laplacian; projecting the answer
    back off the all-ones vector applies L^+ without any shift to tune, so even a tiny lambda2
    keeps its relative accuracy.
    """
    n = laplacian.shape[0]
    try:
        # The grounded Laplacian is symmetric positive definite: a symmetric ordering and no
        # pivoting keep fill-in several times lower than the default COLAMD on expander-like
        # graphs.
        lu = scipy.sparse.linalg.splu(
            laplacian[1:, 1:].tocsc(),
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
    except RuntimeError:
        return None

    def apply_pinv(b: NDArray[np.float64]) -> NDArray[np.float64]:
        flat = np.ravel(b)
        rhs = flat - flat.mean()
        x = np.empty(n, dtype=np.float64)
        x[0] = 0.0
        x[1:] = lu.solve(rhs[1:])
        x -= x.mean()
        return x

    pinv = scipy.sparse.linalg.LinearOperator(
        (n, n), matvec=apply_pinv, rmatvec=apply_pinv, dtype=np.float64
    )
    # A fixed start vector keeps the result reproducible run to run.
    start = np.random.default_rng(0).standard_normal(n)
    start -= start.mean()
    try:
        values = scipy.sparse.linalg.eigsh(
            pinv, k=1, which="LA", v0=start, tol=1e-12, maxiter=max(1000, 20 * n)
        )[0]
    except (scipy.sparse.linalg.ArpackNoConvergence, scipy.sparse.linalg.ArpackError):
        return None
    top = float(values[0])
    if not math.isfinite(top) or top <= 0.0:
        return None
    return 1.0 / top
