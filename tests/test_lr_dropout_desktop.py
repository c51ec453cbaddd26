"""LR dropout on the desktop: the update rule against hand-computed steps, the limits keep=1 / keep=0,
official vs unofficial (in-place momentum masking), seeding and resumption, schedules through SpecLR.

Reference for the rules: the official code (HuangxingLin123/Learning-Rate-Dropout, sgd_lrd.py /
adam_lrd.py) and the unofficial one (noahgolmant/pytorch-lr-dropout, optimizer.py), as summarised in
docs/LR_DROPOUT.md ("The update rule").
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mobile_lr.adapters.torch_lr import SpecLR
from mobile_lr.lr_dropout import (
    SGDLRD,
    AdamWLRD,
    counter_keep,
    make_lrd_optimizer,
    mix32,
    param_keys,
)
from mobile_lr.validation import ValidationError


def _generator_masks(seed: int, shapes, keep: float, steps: int) -> list[list[torch.Tensor]]:
    """The documented generator recipe: one torch.Generator, rand(shape) < keep per parameter per step."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.rand(s, generator=g) < keep for s in shapes] for _ in range(steps)]


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, batches, sched=None) -> None:
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


# ---------------------------------------------------------------------- the rule, by hand


def test_sgd_momentum_matches_a_hand_computed_two_step_run():
    """Official SGD-LRD: buf = mu*buf + g (torch's first step: buf = g); p -= lr * mask * buf."""
    lr, mu, keep, seed = 0.1, 0.9, 0.5, 1
    p0 = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.25], dtype=np.float64)
    g1 = np.array([0.5, 1.0, -1.0, 2.0, 0.0, -0.5])
    g2 = np.array([-1.0, 0.5, 0.5, 1.0, 2.0, 1.0])
    m1, m2 = (m[0].numpy().astype(np.float64) for m in _generator_masks(seed, [(6,)], keep, 2))
    assert 0 < m1.sum() < 6 and not np.array_equal(m1, m2)  # this seed exercises both outcomes

    buf1 = g1
    p1 = p0 - lr * m1 * buf1
    buf2 = mu * buf1 + g2
    p2 = p1 - lr * m2 * buf2

    w = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32))
    opt = SGDLRD([w], lr=lr, momentum=mu, keep=keep, seed=seed)
    for g, expect_p, expect_buf in ((g1, p1, buf1), (g2, p2, buf2)):
        w.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        np.testing.assert_allclose(w.detach().numpy(), expect_p, rtol=0, atol=1e-6)
        np.testing.assert_allclose(opt.state[w]["momentum_buffer"].numpy(), expect_buf, atol=1e-6)


def test_adamw_matches_a_hand_computed_step():
    """Official Adam-LRD on torch's AdamW: moments from the full gradient; kept coordinates take
    p*(1 - lr*wd) - lr/(1-b1) * m / (sqrt(v)/sqrt(1-b2) + eps); dropped ones keep p."""
    lr, b1, b2, eps, wd, keep, seed = 0.01, 0.9, 0.999, 1e-8, 0.1, 0.5, 5
    p0 = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.25])
    g = np.array([0.5, 1.0, -1.0, 2.0, 0.3, -0.5])
    (mask,), = _generator_masks(seed, [(6,)], keep, 1)
    mask = mask.numpy()
    assert 0 < mask.sum() < 6
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    stepped = p0 * (1 - lr * wd) - lr / (1 - b1) * m / (np.sqrt(v) / math.sqrt(1 - b2) + eps)
    expect = np.where(mask, stepped, p0)

    w = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32))
    opt = AdamWLRD([w], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, keep=keep, seed=seed)
    w.grad = torch.tensor(g, dtype=torch.float32)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), expect, atol=1e-6)
    np.testing.assert_allclose(opt.state[w]["exp_avg"].numpy(), m, atol=1e-7)
    np.testing.assert_allclose(opt.state[w]["exp_avg_sq"].numpy(), v, atol=1e-9)


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize("hparams", [
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.1, "weight_decay": 5e-4},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    {},
])
def test_keep_one_is_torch_sgd_bit_for_bit(hparams):
    batches = _batches(15)
    ref_model, lrd_model = _mlp(), _mlp()
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.05, **hparams)
    lrd = SGDLRD(lrd_model.parameters(), lr=0.05, keep=1.0, seed=9, **hparams)
    _train(ref_model, ref, batches)
    _train(lrd_model, lrd, batches)
    for a, b in zip(ref_model.parameters(), lrd_model.parameters(), strict=True):
        assert torch.equal(a, b)
        if hparams.get("momentum"):
            assert torch.equal(ref.state[a]["momentum_buffer"], lrd.state[b]["momentum_buffer"])


@pytest.mark.parametrize("mask", ["generator", "counter"])
def test_keep_one_is_torch_adamw_bit_for_bit(mask):
    batches = _batches(15)
    ref_model, lrd_model = _mlp(), _mlp()
    ref = torch.optim.AdamW(ref_model.parameters(), lr=0.01, weight_decay=0.05)
    lrd = AdamWLRD(lrd_model.parameters(), lr=0.01, weight_decay=0.05, keep=1.0, mask=mask)
    _train(ref_model, ref, batches)
    _train(lrd_model, lrd, batches)
    for a, b in zip(ref_model.parameters(), lrd_model.parameters(), strict=True):
        assert torch.equal(a, b)
        assert torch.equal(ref.state[a]["exp_avg_sq"], lrd.state[b]["exp_avg_sq"])


@pytest.mark.parametrize("kind,hparams", [("sgd-lrd", {"momentum": 0.9, "weight_decay": 1e-3}),
                                          ("adamw-lrd", {"weight_decay": 0.1})])
@pytest.mark.parametrize("mask", ["generator", "counter"])
def test_keep_zero_leaves_parameters_unchanged_but_state_moves(kind, hparams, mask):
    model = _mlp()
    start = [p.detach().clone() for p in model.parameters()]
    opt = make_lrd_optimizer(kind, model.parameters(), keep=0.0, mask=mask, lr=0.1, **hparams)
    _train(model, opt, _batches(5))
    for p, p0 in zip(model.parameters(), start, strict=True):
        assert torch.equal(p, p0)
        state = opt.state[p]["momentum_buffer" if kind == "sgd-lrd" else "exp_avg"]
        assert state.abs().sum() > 0  # the state saw the full gradient all along


# ---------------------------------------------------------------------- official vs unofficial


def test_official_and_inplace_rules_differ_from_the_second_step():
    """Same masks; the first step moves both alike, but the unofficial rule zeroes the dropped
    coordinates of the momentum buffer, so from step 2 on the parameters differ."""
    batches = _batches(3)
    models = {r: _mlp() for r in ("official", "inplace")}
    opts = {r: SGDLRD(m.parameters(), lr=0.1, momentum=0.9, keep=0.5, seed=4, rule=r)
            for r, m in models.items()}
    _train(models["official"], opts["official"], batches[:1])
    _train(models["inplace"], opts["inplace"], batches[:1])
    shapes = [p.shape for p in models["official"].parameters()]
    masks = _generator_masks(4, shapes, 0.5, 1)[0]
    for p_off, p_in, mask in zip(models["official"].parameters(), models["inplace"].parameters(), masks,
                                 strict=True):
        assert torch.equal(p_off, p_in)
        buf_off = opts["official"].state[p_off]["momentum_buffer"]
        buf_in = opts["inplace"].state[p_in]["momentum_buffer"]
        assert torch.equal(buf_in, buf_off * mask)  # the in-place rule: d_p.mul_(mask) on the buffer
    _train(models["official"], opts["official"], batches[1:])
    _train(models["inplace"], opts["inplace"], batches[1:])
    diff = max(float((a - b).detach().abs().max()) for a, b in zip(models["official"].parameters(),
                                                          models["inplace"].parameters(), strict=True))
    assert diff > 1e-3


def test_inplace_rule_masks_adamw_first_moment_only():
    w = torch.nn.Parameter(torch.zeros(64))
    opt = AdamWLRD([w], lr=0.01, keep=0.5, seed=2, rule="inplace")
    w.grad = torch.ones(64)
    opt.step()
    (mask,), = _generator_masks(2, [(64,)], 0.5, 1)
    assert torch.equal(opt.state[w]["exp_avg"], 0.1 * mask.float())
    assert torch.equal(opt.state[w]["exp_avg_sq"], torch.full((64,), 0.001))


# ---------------------------------------------------------------------- seeding, state, masks


@pytest.mark.parametrize("mask", ["generator", "counter"])
def test_runs_repeat_with_a_seed_and_resume_exactly(mask):
    batches = _batches(10)

    def run(seed, upto=10):
        model = _mlp()
        opt = SGDLRD(model.parameters(), lr=0.1, momentum=0.9, keep=0.5, seed=seed, mask=mask)
        _train(model, opt, batches[:upto])
        return model, opt

    a, _ = run(1)
    b, _ = run(1)
    c, _ = run(2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))

    half, opt = run(1, upto=5)
    state = opt.state_dict()
    resumed = _mlp()
    resumed.load_state_dict(half.state_dict())
    opt2 = SGDLRD(resumed.parameters(), lr=0.1, momentum=0.9, keep=0.5, seed=1, mask=mask)
    opt2.load_state_dict(state)
    _train(resumed, opt2, batches[5:])
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), resumed.parameters(), strict=True))


def test_state_of_another_setting_is_refused():
    model = _mlp()
    opt = SGDLRD(model.parameters(), lr=0.1, keep=0.5)
    other = SGDLRD(model.parameters(), lr=0.1, keep=0.3)
    with pytest.raises(ValidationError, match="keep"):
        other.load_state_dict(opt.state_dict())
    with pytest.raises(ValidationError, match="lr_dropout"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("source", ["generator", "counter"])
def test_fraction_kept_is_within_binomial_bounds(keep, source):
    n = 200_000
    if source == "counter":
        kept = counter_keep(seed=11, step=7, key=2, shape=(n,), keep=keep)
    else:
        kept = _generator_masks(11, [(n,)], keep, 1)[0][0]
    sigma = math.sqrt(keep * (1 - keep) / n)
    assert abs(float(kept.float().mean()) - keep) < 5 * sigma


def test_counter_mask_is_the_uint32_hash_and_independent_across_steps_and_parameters():
    """mix32 on int64 (no overflow: values < 2**32, multipliers < 2**31) equals the same hash in
    wrapping uint32 arithmetic; masks of other steps/parameters are uncorrelated (|r| < 5/sqrt(n))."""
    x = np.random.default_rng(0).integers(0, 2**32, size=10_000, dtype=np.uint64).astype(np.uint32)
    y = x.copy()
    y ^= y >> np.uint32(16)
    y *= np.uint32(0x21F0AAAD)
    y ^= y >> np.uint32(15)
    y *= np.uint32(0x735A2D97)
    y ^= y >> np.uint32(15)
    assert np.array_equal(mix32(torch.from_numpy(x.astype(np.int64))).numpy(), y.astype(np.int64))

    n = 100_000
    base = counter_keep(1, 5, 0, (n,), 0.5).float()
    for other in (counter_keep(1, 6, 0, (n,), 0.5), counter_keep(1, 5, 1, (n,), 0.5),
                  counter_keep(2, 5, 0, (n,), 0.5), torch.roll(base, 1) > 0.5):
        r = float(torch.corrcoef(torch.stack([base, other.float()]))[0, 1])
        assert abs(r) < 5 / math.sqrt(n)
    assert torch.equal(counter_keep(1, 5, 0, (n,), 0.5), base > 0.5)  # stateless: same inputs, same mask


def test_bad_settings_are_refused():
    w = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValidationError, match="keep"):
        SGDLRD(w, keep=1.5)
    with pytest.raises(ValidationError, match="rule"):
        SGDLRD(w, rule="masked")
    with pytest.raises(ValidationError, match="mask"):
        AdamWLRD(w, mask="philox")
    with pytest.raises(ValidationError, match="optimizer"):
        make_lrd_optimizer("adam-lrd", w, keep=0.5)


# ---------------------------------------------------------------------- schedules


def test_speclr_drives_the_learning_rate():
    """The mobile-lr schedule sets param_groups' lr; a kept coordinate moves by exactly -lr_t * g."""
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "warmup": {"steps": 2, "start_factor": 0.1},
            "shape": {"type": "cosine"}}
    w = torch.nn.Parameter(torch.zeros(1000))
    opt = SGDLRD([w], lr=0.1, keep=0.5, seed=0, mask="counter")
    sched = SpecLR(opt, spec, total_steps=8)
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = SpecLR(plain, spec, total_steps=8)
    for t in range(1, 9):
        lr = opt.param_groups[0]["lr"]
        assert lr == plain.param_groups[0]["lr"]
        before = w.detach().clone()
        w.grad = torch.ones(1000)
        opt.step()
        sched.step()
        plain.step()
        ref.step()
        kept = counter_keep(0, t, param_keys([(1000,)])[0], (1000,), 0.5)
        assert torch.equal(w[kept], before[kept] - lr)
        assert torch.equal(w[~kept], before[~kept])
    assert sched.get_last_lr() == ref.get_last_lr()


def test_speclr_with_keep_one_equals_plain_sgd():
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.05, "shape": {"type": "rex"}}
    batches = _batches(12)
    a, b = _mlp(), _mlp()
    oa = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    ob = SGDLRD(b.parameters(), lr=0.05, momentum=0.9, keep=1.0)
    _train(a, oa, batches, SpecLR(oa, spec, total_steps=12))
    _train(b, ob, batches, SpecLR(ob, spec, total_steps=12))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
