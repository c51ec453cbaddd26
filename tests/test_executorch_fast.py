"""ExecuTorch's fast form (docs/DECISIONS.md, "ExecuTorch's training step speed").

The convolutions rewritten as matrix products must be the same functions (values and
gradients) as PyTorch's convolutions, for every configuration they accept, and leave the
others alone; the written program must call the optimized kernels (no portable convolution,
``addmm``, or repeated transpose of one tensor) and still train like PyTorch eager.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from torch import nn

from mobile_lr.export import export_bundle
from mobile_lr.export.executorch_fast import fast_form
from mobile_lr.recipes import OptimizerSpec, Recipe
from mobile_lr.runtime import open_runtime
from mobile_lr.runtime.torch_rt import TorchRuntime
from mobile_lr.zoo.modes import LoRAConv

CONVS = [
    ("dense 3x3 stride 2 pad 1", lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 9, 11)),
    ("dense 10x4 stride (2,1) pad (5,1)", lambda: nn.Conv2d(1, 6, (10, 4), stride=(2, 1), padding=(5, 1)),
     (3, 1, 25, 10)),
    ("pointwise, no bias", lambda: nn.Conv2d(6, 5, 1, bias=False), (2, 6, 4, 4)),
    ("pointwise stride 2", lambda: nn.Conv2d(4, 4, 1, stride=2), (2, 4, 7, 7)),
    ("dilated", lambda: nn.Conv2d(2, 3, 3, padding=2, dilation=2), (2, 2, 8, 8)),
    ("depthwise 3x3 pad 1", lambda: nn.Conv2d(6, 6, 3, padding=1, groups=6), (2, 6, 8, 8)),
    ("depthwise 5x5 stride 2", lambda: nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=4, bias=False),
     (3, 4, 9, 9)),
    ("conv1d", lambda: nn.Conv1d(3, 7, 5, stride=2, padding=1), (2, 3, 17)),
    ("depthwise conv1d", lambda: nn.Conv1d(5, 5, 3, padding=1, groups=5), (2, 5, 12)),
    ("padding 'same', even kernel", lambda: nn.Conv1d(3, 4, 4, padding="same"), (2, 3, 11)),
    ("padding 'same', dilated 2d", lambda: nn.Conv2d(2, 3, (3, 2), padding="same", dilation=2), (2, 2, 7, 9)),
    ("padding 'valid'", lambda: nn.Conv2d(2, 3, 3, padding="valid"), (2, 2, 6, 6)),
    ("grouped, 2 groups", lambda: nn.Conv1d(4, 6, 3, padding=1, groups=2), (2, 4, 10)),
    ("depthwise x2 (groups = in, out = 2 in)", lambda: nn.Conv2d(3, 6, 3, padding=1, groups=3), (2, 3, 6, 6)),
    ("reflect padding", lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (2, 3, 6, 7)),
    ("circular padding, conv1d", lambda: nn.Conv1d(2, 3, 3, padding=2, padding_mode="circular"), (2, 2, 8)),
    # the zoo's LoRA on a pointwise convolution runs functional convolutions
    ("LoRA pointwise stride 2", lambda: _lora(nn.Conv2d(4, 6, 1, stride=2)), (2, 4, 7, 7)),
    ("LoRA pointwise conv1d, no bias", lambda: _lora(nn.Conv1d(5, 3, 1, bias=False)), (2, 5, 9)),
    ("a user's functional conv2d, grouped 'same'", lambda: _Functional(), (2, 4, 5, 6)),
    ("transposed stride 2, output padding", lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1,
                                                                        output_padding=1), (2, 3, 5, 6)),
    ("transposed depthwise", lambda: nn.ConvTranspose2d(4, 4, 3, padding=1, groups=4), (2, 4, 5, 5)),
    ("transposed conv1d, grouped, dilated",
     lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2, dilation=2), (2, 4, 7)),
]


def _lora(conv: nn.Conv1d | nn.Conv2d) -> LoRAConv:
    lora = LoRAConv(conv, rank=2, alpha=4.0)
    with torch.no_grad():
        lora.lora_b.normal_()   # B starts at 0: the update must be visible in the check
    return lora


@pytest.mark.parametrize(("what", "make", "shape"), CONVS, ids=[c[0] for c in CONVS])
def test_the_fast_convolution_is_the_convolution_values_and_gradients(what, make, shape):
    torch.manual_seed(0)
    conv = make().double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    _check_values_and_gradients(what, conv, x)


@pytest.mark.parametrize(("what", "make", "shape"), CONVS, ids=[c[0] for c in CONVS])
@pytest.mark.parametrize("trained", ["nothing", "the weights"])
def test_a_convolution_of_an_input_without_gradient_is_the_convolution(what, make, shape, trained):
    """A frozen layer before the first trained one (the unfolded forms when nothing is
    differentiated) and the first trained layer (only its weights' gradients)."""
    torch.manual_seed(0)
    conv = make().double()
    conv.requires_grad_(trained != "nothing")
    x = torch.randn(*shape, dtype=torch.float64)
    if trained == "nothing":
        with fast_form():
            got = conv(x)
        assert got.grad_fn is None
        torch.testing.assert_close(got, conv(x), rtol=1e-12, atol=1e-12)
    else:
        _check_values_and_gradients(what, conv, x)


def _check_values_and_gradients(what: str, conv: nn.Module, x: torch.Tensor) -> None:
    inputs = [x, *conv.parameters()] if x.requires_grad else list(conv.parameters())
    ref = conv(x)
    grads_ref = torch.autograd.grad((ref * ref).sum(), inputs)
    with fast_form():
        got = conv(x)
        grads = torch.autograd.grad((got * got).sum(), inputs)
        assert not _convolutions(got), what  # the fast form ran: no convolution in the graph
    assert _convolutions(conv(x))  # and only within the block
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-11)


def _convolutions(t: torch.Tensor) -> list[str]:
    """The convolution nodes of ``t``'s autograd graph."""
    seen, todo, found = set(), [t.grad_fn], []
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "Convolution" in type(node).__name__:
            found.append(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return found


class _Functional(nn.Module):
    """A user's own functional convolution (weight standardisation, as in BiT/NFNets), grouped
    and ``"same"``: the portable kernel it fell to failed to run in a training program."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 2, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return nn.functional.conv2d(x, w, None, 1, "same", 1, 2)


@pytest.mark.parametrize("conv", [nn.ConvTranspose2d(2, 3, 3, dilation=2, output_padding=1),
                                  nn.Conv3d(2, 2, 3)],
                         ids=["transposed, output padding >= stride", "3d"])
def test_other_convolutions_are_left_alone(conv):
    x = torch.randn(2, 2, *(5,) * (conv.weight.dim() - 2))
    with fast_form():
        assert _convolutions(conv(x))


class _Net(nn.Module):
    """Stem conv, depthwise + pointwise with batch norm, a grouped 'same' conv with reflection
    padding, a Linear head: every rewritten form."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
                                      nn.Conv2d(8, 12, 1), nn.ReLU(),
                                      nn.Conv2d(12, 12, 2, padding="same", groups=3, padding_mode="reflect"))
        self.hidden = nn.Linear(12, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(self.features(x).mean((2, 3)))))


def _program_ops(path) -> collections.Counter:
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary((path / "model.pte").read_bytes())
    program = getattr(program, "program", program)
    plan = next(p for p in program.execution_plan if p.name == "forward")
    ops = collections.Counter()
    for chain in plan.chains:
        for ins in chain.instructions:
            index = getattr(ins.instr_args, "op_index", None)
            if index is not None:
                op = plan.operators[index]
                ops[f"{op.name}.{op.overload}"] += 1
    return ops


class _Inverted(nn.Module):
    """A MobileNetV3-style inverted residual (expand, depthwise, squeeze-excite, project, residual
    add) between a stem and a head: what the layout pass keeps channels-first across."""

    def __init__(self) -> None:
        super().__init__()
        from mobile_lr.zoo.mobilenet import SqueezeExcite

        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
                                   nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                                   nn.ReLU6(), SqueezeExcite(16), nn.Conv2d(16, 8, 1, bias=False),
                                   nn.BatchNorm2d(8))
        self.hidden = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = torch.relu(h + self.block(h))
        return self.head(torch.relu(self.hidden(h.mean((2, 3)))))


# (model, the most permute_copy calls per step: the input's transpose into the stem, the
# Linears' and the squeeze-excite's weight transposes and their gradients; 28 and 41 without
# the layout pass; the frozen stem's unfolded form transposes its input, weight and result)
PROGRAMS = [(_Net, 23), (_Inverted, 33)]


@pytest.mark.parametrize(("make", "most_permutes"), PROGRAMS, ids=["net", "inverted-residual"])
def test_the_program_calls_optimized_kernels_and_trains_like_eager(tmp_path, make, most_permutes):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(16, 1, 12, 12)
    y = torch.randint(0, 4, (16,))
    recipe = Recipe(name="fast-form", model=model, example_input=x, loss="cross_entropy",
                    trainable=tuple(n for n, _ in model.named_parameters() if not n.startswith("features.0")),
                    optimizer=OptimizerSpec("adamw", eps=1e-8, weight_decay=0.01))
    manifest = export_bundle(recipe, tmp_path / "b", backends=("executorch",))
    assert manifest.backends["executorch"].status == "ok", manifest.backends["executorch"].reason
    ops = _program_ops(tmp_path / "b")
    assert not [op for op in ops if "convolution" in op or "addmm" in op], ops
    assert ops["aten::mm.out"] >= 4  # the stem, the pointwise conv, two Linears (and their gradients)
    if make is _Net:
        assert ops["aten::bmm.out"] >= 1  # the grouped conv
    # the frozen stem (nothing differentiates it): im2col rows by unfold, not strided slices
    assert ops["aten::unfold_copy.out"] >= 2, ops
    # the layout pass: no transposes between the layers, no copies of just-written patches
    assert ops["aten::permute_copy.out"] <= most_permutes, ops
    assert ops["dim_order_ops::_clone_dim_order.out"] == 0, ops
    et = open_runtime("executorch", tmp_path / "b")
    eager = TorchRuntime(recipe)
    xs, ys = x.numpy(), y.numpy()
    for _ in range(5):
        a, b = et.step(xs, ys, 0.01), eager.step(xs, ys, 0.01)
        assert a == pytest.approx(b, rel=1e-5)
    trained = et.parameters()  # the trainable ones: the frozen ones are constants of the program
    assert set(trained) == set(recipe.trainable)
    for name, w in trained.items():
        np.testing.assert_allclose(w, eager.parameters()[name], rtol=1e-4, atol=1e-6)
