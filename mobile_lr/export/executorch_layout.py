"""The ExecuTorch fast form's channels-first layout kept across layers (a pass on the edge graphs).

The fast form (:mod:`mobile_lr.export.executorch_fast`) computes every convolution in a
``(C, B, H, W)`` layout and transposes ``(B, C, H, W) <-> (C, B, H, W)`` on entry and exit of
each one; what runs between two convolutions (a frozen BatchNorm's per-channel ``mul`` +
``add``, the activation, a residual ``add``) and the matching parts of the backward run on the
tensor transposed back, so each pair of consecutive convolutions costs two ``permute_copy``
(element by element in ExecuTorch) that cancel. :func:`channels_first_across_layers` finds the
groups of tensors that only elementwise operations and these transposes connect, and
computes each group in the layout that needs the fewest transposes at its edges: a broadcast
operand (a ``(1, C, 1, 1)`` scale) is transposed instead, which is a few numbers. The values
are the same operations on the same numbers (bit for bit).

:func:`drop_redundant_clones` removes the contiguous copies (``_clone_dim_order``) of tensors
that an edge operation just wrote, hence already contiguous: the patches of the convolutions
(a ``slice_copy`` then its reshape's clone) were copied twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["channels_first_across_layers", "drop_redundant_clones"]

SWAP = [1, 0, 2, 3]  # (B, C, H, W) <-> (C, B, H, W); its own inverse
# edge operations that act element by element (broadcasting their smaller operands)
ELEMENTWISE = frozenset({
    "aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.div.Tensor", "aten.where.self",
    "aten.relu.default", "aten.hardtanh.default", "aten.clamp.default", "aten.neg.default",
    "aten.sigmoid.default", "aten.tanh.default", "aten.hardswish.default", "aten.alias_copy.default",
    "aten.le.Scalar", "aten.lt.Scalar", "aten.ge.Scalar", "aten.gt.Scalar", "aten.eq.Scalar",
    "aten.ne.Scalar", "aten.logical_and.default", "aten.logical_or.default", "aten.logical_not.default",
    "aten.bitwise_and.Tensor", "aten.bitwise_or.Tensor", "aten.add.Scalar", "aten.mul.Scalar",
    "aten.sub.Scalar", "aten.div.Scalar", "aten.pow.Tensor_Scalar", "aten.abs.default"})

# the binary ones whose optimized kernels broadcast one axis (the last) of a 2-D operand
FLAT_OPS = frozenset({"aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.div.Tensor"})


def _name(node: Any) -> str:
    return getattr(node.target, "__name__", str(node.target)) if node.op == "call_function" else ""


def _shape(node: Any) -> tuple[str, ...] | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    shape = getattr(val, "shape", None)
    return None if shape is None else tuple(str(s) for s in shape)


def _is_swap(node: Any) -> bool:
    return (_name(node) == "aten.permute_copy.default" and len(node.args) == 2 and not node.kwargs
            and list(node.args[1]) == SWAP)


class _Groups:
    """Union-find of 4-D tensors with a parity: 0 for the same layout, 1 for transposed."""

    def __init__(self) -> None:
        self.parent: dict[Any, tuple[Any, int]] = {}
        self.broken: set[Any] = set()

    def find(self, v: Any) -> tuple[Any, int]:
        path, parity = [], 0
        node = v
        while True:
            up, par = self.parent.setdefault(node, (node, 0))
            if up is node:
                break
            path.append(node)
            parity ^= par
            node = up
        rest = parity  # compress: every node on the path straight under the root
        for n in path:
            par = self.parent[n][1]
            self.parent[n] = (node, rest)
            rest ^= par
        return node, parity

    def join(self, a: Any, b: Any, parity: int) -> None:
        (ra, pa), (rb, pb) = self.find(a), self.find(b)
        if ra is rb:
            if pa ^ pb != parity:  # a tensor and its transpose combined elementwise: leave it
                self.broken.add(ra)
            return
        self.parent[ra] = (rb, pa ^ pb ^ parity)
        if ra in self.broken:
            self.broken.add(rb)


def _absorbs(user: Any, v: Any) -> list[int] | None:
    """The axes of a ``sum`` of ``v`` that gives the same numbers summed over ``v`` transposed
    (the gradient of a BatchNorm's affine weights: axes 0, 2, 3), or None: not when the result
    keeps both of the first two axes (it would come out transposed, not just reshaped)."""
    if _name(user) != "aten.sum.dim_IntList" or user.args[0] is not v or len(user.args) < 2:
        return None
    dims = [d % 4 for d in user.args[1]]
    keepdim = bool(user.args[2]) if len(user.args) > 2 else bool(user.kwargs.get("keepdim", False))
    if 0 not in dims and 1 not in dims:
        return None
    if keepdim and not all(isinstance(d, int) for d in user.meta["val"].shape):
        return None  # reshaped back by a view of a static shape
    return [SWAP[d] if d < 2 else d for d in dims]


def _large_inputs(node: Any) -> list[Any]:
    """The operands of an elementwise node shaped like its output (the others broadcast)."""
    out = _shape(node)
    return [a for a in node.args if hasattr(a, "op") and _shape(a) == out]


class _Rewrite:
    """One group computed with the members of ``flipped`` in the transposed layout."""

    def __init__(self, gm: Any, members: set[Any], flipped: set[Any]) -> None:
        from executorch.exir.dialects._ops import ops as exir_ops

        self.graph, self.members, self.flipped = gm.graph, members, flipped
        self.permute = exir_ops.edge.aten.permute_copy.default
        self.view = exir_ops.edge.aten.view_copy.default
        self.unsqueeze = exir_ops.edge.aten.unsqueeze_copy.default
        self.small_of: dict[Any, Any] = {}
        self.flat_of: dict[Any, Any] = {}
        self.asis_of: dict[Any, Any] = {}
        self.tform_of: dict[Any, Any] = {}
        self.created: set[Any] = set()

    def _make(self, target: Any, args: tuple[Any, ...], like: Any, before: Any | None = None,
              after: Any | None = None) -> Any:
        if after is not None and after.op == "placeholder":
            after, before = None, next(n for n in self.graph.nodes if n.op != "placeholder")
        ctx = self.graph.inserting_after(after) if after is not None else self.graph.inserting_before(before)
        with ctx:
            node = self.graph.call_function(target, args, dict(like.kwargs) if like.target is target else {})
        node.meta.update({k: v for k, v in like.meta.items() if k not in ("val", "tensor_meta", "spec")})
        node.meta["val"] = target(*(a.meta["val"] if hasattr(a, "op") else a for a in args), **node.kwargs)
        self.created.add(node)
        return node

    def _swapped(self, node: Any, like: Any) -> Any:
        """A broadcast operand in the transposed layout, made once per operand: rank 0-2 ones
        broadcast the same either way; a ``(1, C, 1, 1)`` one is a view (``(C, 1, 1, 1)``),
        which ExecuTorch plans as no copy; others a ``permute_copy``."""
        if node in self.members:
            return self.tform(node)
        shape = list(node.meta["val"].shape)
        if len(shape) <= 2:
            return node
        if node not in self.small_of:
            if all(isinstance(d, int) for d in shape) and (len(shape) == 3 or 1 in shape[:2]):
                full = [1] * (4 - len(shape)) + shape
                self.small_of[node] = self._make(self.view, (node, [full[1], full[0], *full[2:]]), node,
                                                 after=node)
            else:
                four = node if len(shape) == 4 else self._make(self.unsqueeze, (node, 0), node, after=node)
                self.small_of[node] = self._make(self.permute, (four, SWAP), node, after=four)
        return self.small_of[node]

    def asis(self, v: Any) -> Any:
        if v not in self.asis_of:
            if _is_swap(v) and v not in self.flipped and v.args[0] in self.flipped:
                self.asis_of[v] = self.tform(v.args[0])
            elif v in self.flipped:
                t = self.tform(v)
                self.asis_of[v] = v if t.args[0] is v and _is_swap(t) else self._make(self.permute, (t, SWAP),
                                                                                       v, after=t)
            else:
                self.asis_of[v] = self._compute(v, transposed=False)
        return self.asis_of[v]

    def tform(self, v: Any) -> Any:
        if v not in self.tform_of:
            if _is_swap(v) and v.args[0] in self.members:
                self.tform_of[v] = self.asis(v.args[0])
            elif v in self.flipped:
                self.tform_of[v] = self._compute(v, transposed=True)
            else:
                a = self.asis(v)
                self.tform_of[v] = self._make(self.permute, (a, SWAP), v, after=a)
        return self.tform_of[v]

    def _compute(self, v: Any, transposed: bool) -> Any:
        """A member in its own layout: a source (or a kept transpose) is itself, an elementwise
        operation runs on its operands in that layout."""
        if _name(v) not in ELEMENTWISE or (v.kwargs and any(hasattr(x, "op") for x in v.kwargs.values())):
            if not transposed:
                return v
            return self._make(self.permute, (v, SWAP), v, after=v)
        large = set(_large_inputs(v))
        if transposed:
            flat = self._flat(v, large)
            if flat is not None:
                return flat
            args = tuple(self.tform(a) if a in large else self._swapped(a, v) if hasattr(a, "op") else a
                         for a in v.args)
            return self._make(v.target, args, v, before=v)
        v.args = tuple(self.asis(a) if a in large or a in self.members else a for a in v.args)
        return v

    def _flat(self, v: Any, large: set[Any]) -> Any | None:
        """A binary ``mul``/``add``/``sub``/``div`` of a transposed ``(C, B, H, W)`` member by a
        per-channel ``(1, C, 1, 1)`` operand (a frozen BatchNorm's scale or shift, their
        gradients) on the views ``(C, B*H*W)`` and ``(C, 1)``: one broadcast axis, the last, is a
        case of the optimized kernels; ``(C, 1, 1, 1)`` fell to the portable broadcasting loop
        (9 % of a MobileNetV2 step). None where it does not apply."""
        if _name(v) not in FLAT_OPS or v.kwargs or len(v.args) != 2 or len(large) != 1:
            return None
        shape = list(v.meta["val"].shape)
        big = next(iter(large))
        small = next((a for a in v.args if a is not big), None)
        if not hasattr(small, "op") or len(shape) != 4 or not isinstance(shape[1], int):
            return None
        full = list(small.meta["val"].shape)
        full = [1] * (4 - len(full)) + full
        if len(full) != 4 or full != [1, shape[1], 1, 1]:
            return None
        c = shape[1]
        if small not in self.flat_of:
            self.flat_of[small] = self._make(self.view, (small, [c, 1]), small, after=small)
        wide = self._make(self.view, (self.tform(big), [c, -1]), v, before=v)
        args = tuple(wide if a is big else self.flat_of[small] for a in v.args)
        out = self._make(v.target, args, v, before=v)
        return self._make(self.view, (out, [c, -1, *shape[2:]]), v, before=v)

    def _sum_transposed(self, user: Any, v: Any) -> None:
        """``user`` (a sum of ``v``, :func:`_absorbs`) over ``v`` transposed; a kept axis of
        size 1 swapped back by a view."""
        shape = list(user.meta["val"].shape)
        new = self._make(user.target, (self.tform(v), _absorbs(user, v), *user.args[2:]), user, before=user)
        if list(new.meta["val"].shape) != shape:
            new = self._make(self.view, (new, shape), user, before=user)
        user.replace_all_uses_with(new)

    def run(self) -> None:
        order = [n for n in self.graph.nodes if n in self.members]
        for v in order:
            (self.tform if v in self.flipped and not _is_swap(v) else self.asis)(v)
        for v in order:
            users = [u for u in v.users if u not in self.members and u not in self.created]
            if v in self.flipped:
                for u in [u for u in users if _absorbs(u, v) is not None]:
                    self._sum_transposed(u, v)
                    users.remove(u)
            if users:
                a = self.asis(v)
                for u in users:
                    if a is not v:
                        u.replace_input_with(v, a)


def _cost(members: set[Any], flipped: set[Any]) -> int:
    """The transposes the group needs with ``flipped`` transposed: one per source (not computed
    in the group) and one per member read outside the group, when in the other layout."""
    cost = 0
    for v in flipped:
        computed = (_is_swap(v) and v.args[0] in members) or (
            _name(v) in ELEMENTWISE and all(a in members for a in _large_inputs(v)))
        outside = any((u not in members and _absorbs(u, v) is None)
                      or (_name(u) in ELEMENTWISE and v not in _large_inputs(u)) for u in v.users)
        cost += (not computed) + outside
    return cost


def _groups(nodes: Iterable[Any]) -> dict[Any, dict[Any, int]]:
    groups = _Groups()
    for n in nodes:
        if _is_swap(n) and len(_shape(n) or ()) == 4:
            groups.join(n, n.args[0], 1)
        elif _name(n) in ELEMENTWISE and len(_shape(n) or ()) == 4:
            groups.find(n)
            for a in _large_inputs(n):
                groups.join(n, a, 0)
    out: dict[Any, dict[Any, int]] = {}
    for v in list(groups.parent):
        root, parity = groups.find(v)
        if root not in groups.broken:
            out.setdefault(root, {})[v] = parity
    return out


def channels_first_across_layers(gm: Any) -> Any:
    """Each group of 4-D tensors joined by elementwise operations and ``(B, C) <-> (C, B)``
    transposes computed in the layout (as captured, or every member transposed) that needs the
    fewest transposes; kept as captured unless that removes some (module docstring)."""
    from torch.fx.passes.infra.pass_base import PassResult

    changed = False
    for parities in _groups(list(gm.graph.nodes)).values():
        members = set(parities)
        now = sum(_is_swap(v) and v.args[0] in members for v in members)
        best = min(({v for v, p in parities.items() if p == f} for f in (0, 1)),
                   key=lambda s: _cost(members, s))
        if _cost(members, best) >= now:
            continue
        _Rewrite(gm, members, best).run()
        changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return PassResult(gm, changed)


def drop_redundant_clones(gm: Any) -> Any:
    """A ``_clone_dim_order`` to the contiguous order of a tensor an operation just wrote (edge
    tensors are contiguous) is its input; a clone of a graph input or read by the output stays."""
    from torch.fx.passes.infra.pass_base import PassResult

    changed = False
    for node in list(gm.graph.nodes):
        if _name(node) != "dim_order_ops._clone_dim_order.default" or not node.args:
            continue
        src, order = node.args[0], node.kwargs.get("dim_order")
        rank = len(_shape(node) or ())
        if (src.op != "call_function" or (order is not None and list(order) != list(range(rank)))
                or any(u.op == "output" for u in node.users)):
            continue
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()
    return PassResult(gm, changed)
