"""Every shape with a PyTorch counterpart matches ``torch.optim.lr_scheduler`` step for step.

Reference: torch 2.13's schedulers, driven exactly as a training loop drives
them (``optimizer.step(); scheduler.step()``), reading ``get_last_lr()[0]``
after ``t`` steps. Tolerance: 1e-9 relative. PyTorch mostly runs *recursive*
forms (each LR is the previous one times a ratio), so its values carry a few
ulps of accumulated rounding; where a recursion lands on zero it may instead
produce a residue like 1e-18, hence an absolute slack of 1e-15 * base_lr,
seven orders of magnitude below any LR that moves a weight.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as L

from mobile_lr.schedules import parse_spec

FORMAT = "mobile-lr.schedule/1"
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

base_lrs = st.floats(1e-4, 1.0)
factors = st.floats(0.01, 1.0)
lengths = st.integers(1, 300)


def torch_lrs(make, base_lr: float, n: int, metrics=None) -> np.ndarray:
    """LRs of steps 0..n-1 from a real torch scheduler."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        out = [sched.get_last_lr()[0]]
        for i in range(1, n):
            opt.step()
            if metrics is None:
                sched.step()
            else:
                sched.step(metrics[i - 1])
            out.append(sched.get_last_lr()[0])
    return np.array(out, dtype=np.float64)


def ours(shape: dict, base_lr: float, n: int, total: int, **extra) -> np.ndarray:
    sched = parse_spec({"format": FORMAT, "base_lr": base_lr, "shape": shape, **extra})
    scalar = np.array([sched.lr(t, [(0, total)]) for t in range(n)])
    vector = sched.lrs(np.arange(n), [(0, total)])
    np.testing.assert_allclose(vector, scalar, rtol=1e-13, atol=0)
    return scalar


def assert_parity(mine: np.ndarray, ref: np.ndarray, base_lr: float) -> None:
    slack = 1e-15 * base_lr
    err = np.abs(mine - ref) - slack
    rel = np.max(np.where(err > 0, err / np.maximum(np.abs(ref), 1e-300), 0.0))
    assert rel <= 1e-9, f"max relative error {rel:.3g} at step {int(np.argmax(err))}"


@SETTINGS
@given(b=base_lrs, factor=factors, iters=lengths, extra=st.integers(0, 50))
def test_constant(b, factor, iters, extra):
    n = iters + extra + 1
    ref = torch_lrs(lambda o: L.ConstantLR(o, factor=factor, total_iters=iters), b, n)
    assert_parity(ours({"type": "constant", "factor": factor, "total_iters": iters}, b, n, 999), ref, b)
    # progress-based: total_iters omitted means the planned total
    assert_parity(ours({"type": "constant", "factor": factor}, b, iters + 1, iters), ref[:iters + 1], b)


@SETTINGS
@given(b=base_lrs, size=st.integers(1, 50), gamma=st.floats(0.0, 1.0), n=st.integers(1, 400))
def test_step(b, size, gamma, n):
    ref = torch_lrs(lambda o: L.StepLR(o, step_size=size, gamma=gamma), b, n)
    assert_parity(ours({"type": "step", "step_size": size, "gamma": gamma}, b, n, 10), ref, b)


@SETTINGS
@given(b=base_lrs, ms=st.lists(st.integers(1, 300), min_size=1, max_size=5, unique=True),
       gamma=st.floats(0.01, 1.0), n=st.integers(1, 400))
def test_multistep(b, ms, gamma, n):
    ms = sorted(ms)
    ref = torch_lrs(lambda o: L.MultiStepLR(o, milestones=ms, gamma=gamma), b, n)
    assert_parity(ours({"type": "multistep", "milestones": ms, "gamma": gamma}, b, n, 10), ref, b)


@SETTINGS
@given(b=base_lrs, gamma=st.floats(0.5, 1.0), n=st.integers(1, 400))
def test_exponential(b, gamma, n):
    ref = torch_lrs(lambda o: L.ExponentialLR(o, gamma=gamma), b, n)
    assert_parity(ours({"type": "exponential", "gamma": gamma}, b, n, 10), ref, b)


@SETTINGS
@given(b=base_lrs, s=st.floats(0.01, 1.0), e=st.floats(0.0, 1.0), iters=lengths,
       extra=st.integers(0, 50))
def test_linear(b, s, e, iters, extra):
    n = iters + extra + 1
    ref = torch_lrs(lambda o: L.LinearLR(o, start_factor=s, end_factor=e, total_iters=iters), b, n)
    shape = {"type": "linear", "start_factor": s, "end_factor": e}
    assert_parity(ours({**shape, "total_iters": iters}, b, n, 999), ref, b)
    assert_parity(ours(shape, b, iters + 1, iters), ref[:iters + 1], b)


@SETTINGS
@given(b=base_lrs, power=st.floats(0.1, 4.0), iters=lengths, extra=st.integers(0, 50))
def test_polynomial(b, power, iters, extra):
    n = iters + extra + 1
    ref = torch_lrs(lambda o: L.PolynomialLR(o, total_iters=iters, power=power), b, n)
    assert_parity(ours({"type": "polynomial", "power": power, "total_iters": iters}, b, n, 999), ref, b)
    assert_parity(ours({"type": "polynomial", "power": power}, b, iters + 1, iters), ref[:iters + 1], b)


@SETTINGS
@given(b=base_lrs, tmax=st.integers(1, 250), frac=st.floats(0.0, 1.0))
def test_cosine_including_past_the_end(b, tmax, frac):
    eta_min = b * frac
    n = 3 * tmax + 2  # PyTorch's cosine is periodic past T_max; so is an explicit T_max here
    ref = torch_lrs(lambda o: L.CosineAnnealingLR(o, T_max=tmax, eta_min=eta_min), b, n)
    assert_parity(ours({"type": "cosine", "T_max": tmax, "eta_min": eta_min}, b, n, 999), ref, b)
    assert_parity(ours({"type": "cosine", "eta_min": eta_min}, b, tmax + 1, tmax), ref[:tmax + 1], b)


@SETTINGS
@given(b=base_lrs, t0=st.integers(1, 60), mult=st.integers(1, 3), frac=st.floats(0.0, 1.0),
       n=st.integers(1, 500))
def test_cosine_restarts(b, t0, mult, frac, n):
    eta_min = b * frac
    ref = torch_lrs(lambda o: L.CosineAnnealingWarmRestarts(o, T_0=t0, T_mult=mult, eta_min=eta_min),
                    b, n)
    shape = {"type": "cosine_restarts", "T_0": t0, "T_mult": mult, "eta_min": eta_min}
    assert_parity(ours(shape, b, n, 10), ref, b)


@SETTINGS
@given(max_lr=st.floats(1e-3, 1.0), total=st.integers(10, 400), pct=st.floats(0.05, 0.45),
       strategy=st.sampled_from(["cos", "linear"]), div=st.floats(1.5, 100.0),
       fdiv=st.floats(1.5, 1e5), three=st.booleans())
def test_onecycle(max_lr, total, pct, strategy, div, fdiv, three):
    if pct * total < 2:  # PyTorch divides by zero when the warm-up phase is under one step
        pct = 2.0 / total
    kw = dict(max_lr=max_lr, total_steps=total, pct_start=pct, anneal_strategy=strategy,
              div_factor=div, final_div_factor=fdiv, three_phase=three)
    # Steps 0..total-1: PyTorch extrapolates at t == total (below zero for 'linear') and raises
    # after; mobile-lr holds the final LR there (checked below).
    ref = torch_lrs(lambda o: L.OneCycleLR(o, cycle_momentum=False, **kw), 0.5, total)
    shape = {"type": "onecycle", **{k: v for k, v in kw.items() if k != "total_steps"}}
    assert_parity(ours({**shape, "total_steps": total}, 0.5, total, 999), ref, max_lr)
    mine = ours(shape, 0.5, total + 3, total)
    assert_parity(mine[:total], ref, max_lr)
    assert np.all(mine[total - 1:] == pytest.approx(max_lr / div / fdiv, rel=1e-12))


@SETTINGS
@given(lo=st.floats(1e-4, 0.1), hi=st.floats(0.1, 1.0), up=st.integers(1, 40),
       down=st.one_of(st.none(), st.integers(1, 40)),
       mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
       gamma=st.floats(0.9, 1.0), n=st.integers(1, 300))
def test_cyclic(lo, hi, up, down, mode, gamma, n):
    ref = torch_lrs(lambda o: L.CyclicLR(o, base_lr=lo, max_lr=hi, step_size_up=up,
                                         step_size_down=down, mode=mode, gamma=gamma,
                                         cycle_momentum=False), 0.5, n)
    shape = {"type": "cyclic", "base_lr": lo, "max_lr": hi, "step_size_up": up, "mode": mode,
             "gamma": gamma}
    if down is not None:
        shape["step_size_down"] = down
    assert_parity(ours(shape, 0.5, n, 10), ref, hi)


@SETTINGS
@given(b=base_lrs, mode=st.sampled_from(["min", "max"]), factor=st.floats(0.05, 0.95),
       patience=st.integers(0, 6), threshold=st.floats(0.0, 0.2),
       tmode=st.sampled_from(["rel", "abs"]), cooldown=st.integers(0, 4),
       min_frac=st.floats(0.0, 0.5), eps=st.sampled_from([0.0, 1e-8, 1e-3]),
       metrics=st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=120))
def test_plateau(b, mode, factor, patience, threshold, tmode, cooldown, min_frac, eps, metrics):
    kw = dict(mode=mode, factor=factor, patience=patience, threshold=threshold,
              threshold_mode=tmode, cooldown=cooldown, min_lr=b * min_frac, eps=eps)
    n = len(metrics) + 1
    ref = torch_lrs(lambda o: L.ReduceLROnPlateau(o, **kw), b, n, metrics=metrics)
    sched = parse_spec({"format": FORMAT, "base_lr": b, "shape": {"type": "plateau", **kw}})
    state = sched.plateau_start()
    mine = [sched.lr(0, [(0, n)], state)]
    for t, m in enumerate(metrics, start=1):
        state = sched.plateau_observe(state, m)
        mine.append(sched.lr(t, [(0, n)], state))
    assert_parity(np.array(mine), ref, b)


@SETTINGS
@given(b=base_lrs, w=st.integers(1, 40), s=st.floats(0.01, 1.0), total=st.integers(50, 300),
       frac=st.floats(0.0, 0.9))
def test_warmup_equals_sequential_linear_then_cosine(b, w, s, total, frac):
    """Warm-up = SequentialLR([LinearLR(s, 1, W), CosineAnnealingLR(T - W)], milestones=[W])."""
    eta_min = b * frac

    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=s, end_factor=1.0, total_iters=w),
                                  L.CosineAnnealingLR(o, T_max=total - w, eta_min=eta_min)],
                              milestones=[w])

    ref = torch_lrs(make, b, total + 1)
    mine = ours({"type": "cosine", "eta_min": eta_min}, b, total + 1, total,
                warmup={"steps": w, "start_factor": s, "max_fraction": 0.99})
    assert_parity(mine, ref, b)


@SETTINGS
@given(b=base_lrs, n1=st.integers(1, 60), size=st.integers(1, 30), gamma=st.floats(0.1, 1.0),
       total=st.integers(70, 300))
def test_sequence_equals_sequential_lr(b, n1, size, gamma, total):
    def make(o):
        return L.SequentialLR(o, [L.StepLR(o, step_size=size, gamma=gamma),
                                  L.CosineAnnealingLR(o, T_max=total - n1)], milestones=[n1])

    ref = torch_lrs(make, b, total + 1)
    shape = {"type": "sequence", "parts": [
        {"steps": n1, "shape": {"type": "step", "step_size": size, "gamma": gamma}},
        {"shape": {"type": "cosine"}}]}
    assert_parity(ours(shape, b, total + 1, total), ref, b)
