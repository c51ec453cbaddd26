"""The architectures phones fine-tune, exported and trained on every engine.

Five small models cover them (small widths: what is tested is the ops, not the size):

* ``image``: a MobileNetV2/V3-style CNN: depthwise and pointwise convolutions, batch norm
  everywhere, inverted residuals, hardswish, squeeze-excite, an average pooling, dropout,
  and a LoRA head (a frozen Linear plus trainable low-rank A/B); the stem and first block
  are frozen, the last block, the adapter and its bias train;
* ``text``: token ids (int64) into an ``nn.Embedding`` and an ``nn.TransformerEncoder``
  (LayerNorm, multi-head attention, dropout), mean-pooled into a linear head;
* ``sensor``: a GRU and an LSTM over accelerometer-like windows;
* ``activations``: an MLP through SiLU, Mish, ELU, SELU, CELU, Softplus, PReLU and GroupNorm, which one engine
  or the other cannot differentiate as they are (the training form writes them out);
* ``functional``: the same functions and the poolings called with ``torch.nn.functional`` inside
  ``forward``, as users' models do (the training form writes out the calls, not the modules).

For each model and each engine (ONNX Runtime Training, ExecuTorch, PyTorch eager): the
export proves both engines ("ok" only after the exporter opened, evaluated and stepped
them); the evaluation loss at the initial weights matches PyTorch eager's in eval mode
(1e-4 relative) on a batch the exporter never saw; five steps on one batch lower the loss;
a run resumed from a checkpoint continues bit for bit. Dropout is present with p=0 here, so
that resume is exact (no engine exposes its dropout generator's state);
``test_dropout_is_on_in_training_and_off_in_evaluation`` covers p>0.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from mobile_lr.export import export_bundle
from mobile_lr.recipes import OptimizerSpec, Recipe
from mobile_lr.runtime import open_runtime

KINDS = ("ort", "executorch", "torch")
RTOL = 1e-4


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, max(1, c // 4), 1)
        self.expand = nn.Conv2d(max(1, c // 4), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int = 3) -> None:
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                nn.Hardswish())
        self.se = SqueezeExcite(h)
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.dw(self.expand(x))))


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update ``B @ A`` (B starts at zero)."""

    def __init__(self, i: int, o: int, rank: int = 2) -> None:
        super().__init__()
        self.base = nn.Linear(i, o)
        self.a = nn.Parameter(torch.randn(rank, i) * 0.1)
        self.b = nn.Parameter(torch.zeros(o, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.t()) @ self.b.t()


class TinyMobileNet(nn.Module):
    def __init__(self, drop: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4),
                                  nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(4), nn.AvgPool2d(2), InvertedResidual(4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop)
        self.head = LoRALinear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.flatten(self.pool(self.blocks(self.stem(x))), 1)))


class TextClassifier(nn.Module):
    def __init__(self, vocab: int = 16, d: int = 8, drop: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=16, dropout=drop, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(1))


class SensorRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.lstm = nn.LSTM(6, 6, batch_first=True)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        h, _ = self.lstm(h)
        return self.head(h[:, -1])


def _written_out_modules() -> tuple[nn.Module, ...]:
    return (nn.SiLU(), nn.Mish(), nn.ELU(0.5), nn.SELU(), nn.CELU(0.7), nn.Softplus(2.0, 3.0), nn.PReLU(8),
            nn.GroupNorm(2, 8))


class ActivationMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(5, 8)]
        for act in _written_out_modules():
            layers += [act, nn.Linear(8, 8)]
        self.net = nn.Sequential(*layers, nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FunctionalNet(nn.Module):
    """A user's model written with ``torch.nn.functional`` calls in its ``forward``, not modules
    (torchvision's squeeze-excitation, Hugging Face's activations): a batch norm at the root
    followed by ``F.hardswish``, ``F.silu``, a squeeze-excite through ``F.adaptive_avg_pool2d(x, 1)``
    and ``F.hardsigmoid``, a U-Net-style skip down by a strided convolution and up by
    ``F.conv_transpose2d``, ``F.avg_pool2d``, ``F.adaptive_avg_pool2d`` to 2x2, ``F.group_norm``,
    then an MLP through the functional activations and ``F.dropout(training=self.training)``."""

    def __init__(self, c: int = 4, d: int = 8, drop: float = 0.0) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.reduce, self.expand = nn.Conv2d(c, 2, 1), nn.Conv2d(2, c, 1)
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.up = nn.Parameter(torch.randn(c, c, 3, 3) * 0.2)
        self.gn_weight, self.gn_bias = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.randn(c) * 0.1)
        self.fc = nn.Linear(4 * c, d)
        self.prelu = nn.Parameter(torch.full((d,), 0.25))
        self.mlp = nn.ModuleList(nn.Linear(d, d) for _ in range(6))
        self.head = nn.Linear(d, 3)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = nn.functional
        h = f.silu(self.conv2(f.hardswish(self.bn(self.conv(x)))))
        h = h * f.hardsigmoid(self.expand(f.relu(self.reduce(f.adaptive_avg_pool2d(h, 1)))))
        h = h + f.conv_transpose2d(f.relu(self.down(h)), self.up, stride=2, padding=1, output_padding=1)
        h = f.adaptive_avg_pool2d(f.avg_pool2d(h, 2), (2, 2))
        h = self.fc(torch.flatten(f.group_norm(h, 2, self.gn_weight, self.gn_bias), 1))
        acts = (f.mish, lambda v: f.elu(v, 0.5), f.selu, lambda v: f.celu(v, 0.7),
                lambda v: f.softplus(v, 2.0, 3.0), lambda v: f.prelu(v, self.prelu))
        for act, layer in zip(acts, self.mlp, strict=True):
            h = layer(act(h))
        return self.head(f.dropout(h, self.drop, training=self.training))


def _seeded(make, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make()
        for mod in model.modules():  # running statistics as a pre-trained trunk has them
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
        return model


def _example(shape: tuple[int, ...], tokens: int = 0, seed: int = 1) -> torch.Tensor:
    """A seeded batch: normal floats, or token ids below ``tokens``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, tokens, shape, generator=gen) if tokens else torch.randn(shape, generator=gen)


def image_recipe() -> Recipe:
    model = _seeded(TinyMobileNet)
    trainable = tuple(n for n, _ in model.named_parameters()
                      if n.startswith("blocks.2.") or n in ("head.a", "head.b", "head.base.bias"))
    return Recipe("tiny-mobilenet", model, _example((6, 1, 16, 16)), trainable=trainable,
                  optimizer=OptimizerSpec("adamw", weight_decay=0.01))


def text_recipe() -> Recipe:
    return Recipe("tiny-text", _seeded(TextClassifier), _example((6, 4), tokens=16))


def sensor_recipe() -> Recipe:
    return Recipe("tiny-sensor", _seeded(SensorRNN), _example((6, 3, 3)), optimizer=OptimizerSpec("sgd"))


def activations_recipe() -> Recipe:
    return Recipe("tiny-activations", _seeded(ActivationMLP), _example((6, 5)) * 3.0)


def functional_recipe() -> Recipe:
    return Recipe("tiny-functional", _seeded(FunctionalNet), _example((6, 1, 8, 8)))


RECIPES = {"image": image_recipe, "text": text_recipe, "sensor": sensor_recipe,
           "activations": activations_recipe, "functional": functional_recipe}


@pytest.fixture(scope="session", params=sorted(RECIPES))
def exported(request, tmp_path_factory):
    """(recipe factory, bundle) for each architecture, exported once with both engines."""
    make = RECIPES[request.param]
    out = tmp_path_factory.mktemp("arch") / request.param
    manifest = export_bundle(make(), out).to_dict()
    return make, out, manifest


def _batch(recipe: Recipe, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = _example(tuple(recipe.example_input.shape), 16 if recipe.input_dtype == "int64" else 0, seed)
    with torch.no_grad():
        classes = recipe.model.eval()(x[:1]).shape[-1]
    return x.numpy(), (torch.arange(len(x)) % classes).numpy()


def _open(kind: str, make, bundle):
    return open_runtime("torch", make()) if kind == "torch" else open_runtime(kind, bundle)


def test_every_engine_is_proven_at_export(exported):
    _, _, manifest = exported
    for kind in ("ort", "executorch"):
        info = manifest["backends"][kind]
        assert info["status"] == "ok", info.get("reason")
        assert info["proof"]["rel_diff"] <= RTOL and np.isfinite(info["proof"]["step_loss"])
    bn = manifest["model"]["batchnorm"]
    assert bn["mode"] == "frozen"
    assert bool(bn["modules"]) == (manifest["model"]["recipe"] in ("tiny-mobilenet", "tiny-functional"))


@pytest.mark.parametrize("kind", KINDS)
def test_parity_training_and_exact_resume(exported, kind, tmp_path):
    make, bundle, _ = exported
    recipe = make()
    x, y = _batch(recipe, seed=7)  # not the exporter's proof batch
    with torch.no_grad():
        eager = float(recipe.torch_loss(recipe.model.eval()(torch.from_numpy(x)), torch.from_numpy(y)))
    rt = _open(kind, make, bundle)
    assert abs(rt.evaluate(x, y)["loss"] - eager) <= RTOL * abs(eager)

    lr = 0.05
    losses = [rt.step(x, y, lr) for _ in range(2)]
    rt.save(tmp_path / "ckpt")
    losses += [rt.step(x, y, lr) for _ in range(3)]
    assert losses[-1] < losses[0]  # it learns

    resumed = _open(kind, make, bundle)
    resumed.load(tmp_path / "ckpt")
    again = [resumed.step(x, y, lr) for _ in range(3)]
    assert again == losses[2:]  # bit for bit
    for name, value in rt.parameters().items():
        assert np.array_equal(value, resumed.parameters()[name]), name


class DropoutMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def test_dropout_is_on_in_training_and_off_in_evaluation(tmp_path):
    def make() -> Recipe:
        return Recipe("dropout-mlp", _seeded(DropoutMLP), torch.randn(8, 8))

    recipe = make()
    manifest = export_bundle(recipe, tmp_path / "b").to_dict()
    assert all(manifest["backends"][k]["status"] == "ok" for k in ("ort", "executorch"))
    x, y = _batch(recipe, seed=3)
    with torch.no_grad():
        eager_out = recipe.model.eval()(torch.from_numpy(x))
        eager = float(recipe.torch_loss(eager_out, torch.from_numpy(y)))
    for kind in KINDS:
        rt = _open(kind, make, tmp_path / "b")
        first, second = rt.evaluate(x, y)["loss"], rt.evaluate(x, y)["loss"]
        assert first == second and abs(first - eager) <= RTOL * eager, kind  # deterministic, eval mode
        np.testing.assert_allclose(rt.predict(x), eager_out.numpy(), rtol=1e-5, atol=1e-6)
        train_losses = {rt.step(x, y, 0.0) for _ in range(4)}  # lr 0: the weights stay, the masks change
        assert len(train_losses) >= 2 and max(abs(t - eager) for t in train_losses) > 1e-3, kind


def _autograd_ops(t: torch.Tensor) -> set[str]:
    """The kinds of autograd node ``t`` was computed through."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(n for n, _ in node.next_functions)
    return {type(n).__name__ for n in seen}


def _same_in_value_and_gradient(fn, x: torch.Tensor, rtol: float = 1e-9) -> None:
    """``fn(x)`` under the written-out forms against torch's own, in value and gradient, and the
    form really ran (it went through other autograd nodes than torch's)."""
    from mobile_lr.export.written_out import written_out

    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a = fn(xa)
    with written_out():
        b = fn(xb)
    assert _autograd_ops(b) != _autograd_ops(a), (fn, _autograd_ops(a))
    (a * a.detach()).sum().backward()   # a gradient that differs per element
    (b * b.detach()).sum().backward()
    assert torch.allclose(b, a, rtol=1e-9, atol=1e-12), fn
    assert torch.allclose(xb.grad, xa.grad, rtol=rtol, atol=1e-12), fn


def test_the_written_out_activations_are_torchs_in_value_and_gradient():
    """Far into both tails (where a naive ``exp`` overflows), at 0 (where ``relu``'s slope is a
    convention) and around Softplus's threshold: value and gradient as torch's own, for the
    modules and for the same functions called in a ``forward``."""
    f = nn.functional
    x = torch.cat([torch.randn(2007, dtype=torch.float64) * 5,
                   torch.tensor([-200.0, -30.0, -1e-6, 0.0, 1e-6, 1.49, 1.51, 30.0, 200.0],
                                dtype=torch.float64)])
    x = x.reshape(-1, 8)   # (N, C) for PReLU's and GroupNorm's channels
    w, b = torch.rand(8, dtype=torch.float64) + 0.5, torch.randn(8, dtype=torch.float64)
    functions = (f.silu, f.mish, lambda v: f.elu(v, 0.5), f.selu, torch.selu, lambda v: f.celu(v, alpha=0.7),
                 lambda v: torch.celu(v, 0.7), lambda v: f.softplus(v, beta=2.0, threshold=3.0),
                 lambda v: f.prelu(v, w), lambda v: f.group_norm(v, 4, w, b), lambda v: f.group_norm(v, 2))
    for act in (*_written_out_modules(), nn.ELU(), nn.CELU(), nn.Softplus(), nn.PReLU(), nn.GroupNorm(4, 8),
                *functions):
        if isinstance(act, nn.Module):
            act = act.double()
            for p in act.parameters():   # away from the initial 1 / 0.25 / 0
                p.data.uniform_(-1.0, 1.0)
        # torch's CELU rounds its input scale 1/alpha to float32 (1/0.7: 2.4e-8 off), which far
        # in the tail (exp(x/alpha) at x = -200) moves its own gradient by 5e-6 relative
        celu = (isinstance(act, nn.CELU) and act.alpha != 1.0) or act in functions[5:7]
        _same_in_value_and_gradient(act, x, rtol=1e-5 if celu else 1e-9)


def test_average_pooling_is_a_depthwise_convolution_where_they_agree():
    """Module or function, plain or adaptive to a size dividing the input: torch's numbers through
    a convolution; where a convolution would differ (ceil mode, padding not counted, a global or
    non-dividing adaptive size) the call runs as it is."""
    from mobile_lr.export.written_out import written_out

    f = nn.functional
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    for pool in (nn.AvgPool2d(2), nn.AvgPool2d(3, 1, 1), nn.AvgPool2d((2, 3), (1, 2)),
                 nn.AdaptiveAvgPool2d((2, 4)), nn.AdaptiveAvgPool2d((None, 3)),
                 lambda v: f.avg_pool2d(v, 2, padding=1), lambda v: f.adaptive_avg_pool2d(v, 2)):
        _same_in_value_and_gradient(pool, x)
    for kept in (nn.AvgPool2d(3, ceil_mode=True), nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                 nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(5)):
        with written_out():
            assert "ConvolutionBackward0" not in _autograd_ops(kept(x.requires_grad_())), kept


def test_instance_norm_padding_and_nearest_upsampling_are_written_out_exactly():
    """InstanceNorm without running statistics (a group per channel), reflection/replication/
    circular padding (slices concatenated) and nearest upsampling by whole factors (elements
    repeated): torch's value and gradient; what the forms do not cover runs as it is."""
    from mobile_lr.export.written_out import written_out

    f = nn.functional
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    norm = nn.InstanceNorm2d(3, affine=True).double()
    for p in norm.parameters():
        p.data.uniform_(0.5, 1.5)
    for fn in (norm, nn.InstanceNorm2d(3), nn.ReflectionPad2d((1, 2, 2, 1)), nn.ReplicationPad2d(2),
               nn.CircularPad2d((1, 0, 2, 3)), lambda v: f.pad(v.flatten(2), (2, 1), mode="reflect"),
               lambda v: nn.ReflectionPad1d(2)(v.flatten(2)), nn.Upsample(scale_factor=2.0),
               nn.Upsample(scale_factor=(3, 2)), lambda v: f.interpolate(v, size=(10, 18)),
               lambda v: f.interpolate(v.flatten(2), scale_factor=3)):
        _same_in_value_and_gradient(fn, x)
    for kept in (nn.InstanceNorm2d(3, track_running_stats=True), nn.ZeroPad2d(1),
                 nn.Upsample(scale_factor=2.0, mode="bilinear"), nn.Upsample(scale_factor=1.5)):
        a = kept(x.requires_grad_())
        with written_out():
            b = kept(x)
        assert _autograd_ops(b) == _autograd_ops(a) and torch.equal(a, b), kept


TRANSPOSED = [
    lambda: nn.ConvTranspose2d(4, 6, 2, stride=2),
    lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
    lambda: nn.ConvTranspose2d(4, 6, 3, stride=(2, 1), padding=(2, 0), dilation=(1, 2), groups=2),
    lambda: nn.ConvTranspose2d(4, 4, 3, padding=1, groups=4, bias=False),
    lambda: nn.ConvTranspose2d(4, 2, 5, stride=2, padding=3, dilation=2, output_padding=1),
    lambda: nn.ConvTranspose1d(4, 3, 4, stride=3, padding=4, output_padding=2),
]


@pytest.mark.parametrize("make", TRANSPOSED, ids=range(len(TRANSPOSED)))
def test_a_transposed_convolution_is_an_ordinary_one_in_value_and_gradient(make):
    """Spread by the stride, padded or cropped, the kernel swapped and flipped (all products with
    constant matrices): torch's output and gradients (input, weight, bias) to 1e-9 in float64,
    through no transposed convolution; an output padding not below the stride runs as it is."""
    from mobile_lr.export.written_out import written_out

    torch.manual_seed(0)
    conv = make().double()
    x = torch.randn(2, 4, *(5, 6)[: conv.weight.dim() - 2], dtype=torch.float64, requires_grad=True)
    a = conv(x)
    with written_out():
        b = conv(x)
    assert _autograd_ops(b) != _autograd_ops(a) and b.shape == a.shape
    wrt = [x, *conv.parameters()]
    grads = [torch.autograd.grad((y * y.sin()).sum(), wrt) for y in (a, b)]
    for ga, gb in zip(*grads, strict=True):
        assert torch.allclose(gb, ga, rtol=1e-9, atol=1e-12)
    assert torch.allclose(b, a, rtol=1e-9, atol=1e-12)
    kept = nn.ConvTranspose2d(4, 4, 3, dilation=2, output_padding=1).double()  # output padding >= stride
    x4 = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    with written_out():
        b = kept(x4)
    assert _autograd_ops(b) == _autograd_ops(kept(x4))


@pytest.mark.parametrize("kind", [nn.GRU, nn.LSTM])
def test_unrolled_rnns_are_torchs_in_both_directions(kind):
    """The unrolled cell (ONNX Runtime's training graph) against torch's fused layer: two layers,
    both directions, an initial state; output, final states and gradients to 1e-9 in float64."""
    from mobile_lr.export.forms import unrolled_rnns

    torch.manual_seed(0)
    rnn = kind(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    h0 = torch.randn(4, 2, 4, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if kind is nn.LSTM else h0
    runs = []
    for unrolled in (False, True):
        rnn.zero_grad()
        with unrolled_rnns(rnn) if unrolled else contextlib.nullcontext() as names:
            out, final = rnn(x, state)
        finals = final if kind is nn.LSTM else (final,)
        (out.square().sum() + sum(s.square().sum() for s in finals)).backward()
        runs.append((out, finals, [p.grad.clone() for p in rnn.parameters()]))
    assert names == [""]
    (out_a, fin_a, grad_a), (out_b, fin_b, grad_b) = runs
    assert torch.allclose(out_b, out_a, rtol=1e-9, atol=1e-12)
    for a, b in zip((*fin_a, *grad_a), (*fin_b, *grad_b), strict=True):
        assert torch.allclose(b, a, rtol=1e-9, atol=1e-12)


FUSED_OPS = {"silu", "mish", "elu", "selu", "celu", "softplus", "prelu", "_prelu_kernel", "group_norm",
             "native_group_norm", "avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
             "instance_norm", "pad", "reflection_pad2d", "replication_pad2d", "upsample_nearest2d",
             "conv_transpose1d", "conv_transpose2d"}


def test_torch_export_captures_every_form():
    """ExecuTorch's capture (strict ``torch.export``, Dynamo) sees the mode for every function of
    ``FORMS``: none of the fused ops is left in the graph (``F.pad`` reaches the mode as its
    builtin there, which this found)."""
    from mobile_lr.export.written_out import FORMS, written_out

    f = nn.functional
    w = torch.rand(4) + 0.5
    calls = (f.silu, f.mish, lambda v: f.elu(v, 0.5), torch.selu, lambda v: f.celu(v, 0.7), f.softplus,
             lambda v: f.prelu(v, w), lambda v: f.group_norm(v, 2, w, w), lambda v: f.avg_pool2d(v, 2),
             lambda v: f.adaptive_avg_pool2d(v, 2), f.instance_norm, nn.ReflectionPad2d(1),
             nn.ReplicationPad2d(1), lambda v: f.interpolate(v, scale_factor=2.0),
             nn.ConvTranspose2d(4, 2, 3, stride=2),
             lambda v: f.conv_transpose1d(v.flatten(2), w.reshape(4, 1, 1)))
    assert len(calls) >= len(set(FORMS.values()))  # one call per form at least

    class Call(nn.Module):
        def __init__(self, fn) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(x)

    for fn in calls:
        with written_out():
            graph = torch.export.export(Call(fn), (torch.randn(2, 4, 4, 4),), strict=True).graph
        ops = {n.target.__name__.split(".")[0] for n in graph.nodes if n.op == "call_function"}
        assert not ops & FUSED_OPS, (fn, ops)


def test_a_global_average_of_a_channels_last_tensor_needs_no_strided_scatter():
    """ConvNeXt-style models run a LayerNorm over the channels through ``x.permute(0, 2, 3, 1)``
    and back, so the pooled input is channels-last: the ``keepdim`` mean torch makes of
    ``AdaptiveAvgPool2d(1)`` kept those strides and the ``flatten`` after it became an
    ``as_strided`` view, whose gradient ``as_strided_scatter`` ExecuTorch has no kernel for (the
    model was ``unsupported``). The global-average form is a plain mean plus two unit axes: the
    same values, and the joint graph has no strided view."""
    from torch.export.experimental import _export_forward_backward

    from mobile_lr.export.written_out import written_out

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln, self.pool, self.head = nn.LayerNorm(4), nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            h = self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            logits = self.head(torch.flatten(self.pool(h), 1))
            return nn.functional.cross_entropy(logits, y), logits.detach()

    torch.manual_seed(0)
    net, x, y = Net(), torch.randn(2, 4, 3, 3), torch.tensor([0, 2])
    ref = net(x, y)[1]
    for form in (contextlib.nullcontext(), written_out()):
        with form:
            joint = _export_forward_backward(torch.export.export(net, (x, y), strict=True))
        strided = [n for n in joint.graph.nodes if "as_strided" in str(n.target)]
        if isinstance(form, contextlib.nullcontext):
            assert strided  # the case this guards: torch's own capture has them
        else:
            assert not strided, strided
    with written_out():
        torch.testing.assert_close(net(x, y)[1], ref, rtol=1e-6, atol=1e-7)
