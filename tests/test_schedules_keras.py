"""Keras-named shapes against Keras 3's schedules: the real ones, and their closed forms.

The real ``keras.optimizers.schedules`` (Keras 3 on the torch backend, float64: no TensorFlow
or JAX) are compared at the bottom of this file, step for step to 1e-12. The closed forms
above them are transcribed from ``keras/src/optimizers/schedules/learning_rate_schedule.py``
and written independently of ``mobile_lr.schedules.shapes``; they also run in the core
install, where Keras is not.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobile_lr.schedules import parse_spec

pytestmark = pytest.mark.core


FORMAT = "mobile-lr.schedule/1"
S = settings(max_examples=60, deadline=None)


def lrs(shape, base_lr, n, total=10_000):
    return parse_spec({"format": FORMAT, "base_lr": base_lr, "shape": shape}).lrs(np.arange(n),
                                                                                [(0, total)])


@S
@given(lr0=st.floats(1e-4, 1), rate=st.floats(0.01, 1.0), steps=st.integers(1, 100),
       stair=st.booleans(), n=st.integers(1, 300))
def test_exponential_decay(lr0, rate, steps, stair, n):
    def keras(s):  # ExponentialDecay.__call__
        p = s / steps
        if stair:
            p = math.floor(p)
        return lr0 * rate ** p

    got = lrs({"type": "exponential", "decay_rate": rate, "decay_steps": steps, "staircase": stair},
              lr0, n)
    np.testing.assert_allclose(got, [keras(s) for s in range(n)], rtol=1e-12)


@S
@given(lr0=st.floats(1e-4, 1), rate=st.floats(0.0, 5.0), steps=st.integers(1, 100),
       stair=st.booleans(), n=st.integers(1, 300))
def test_inverse_time_decay(lr0, rate, steps, stair, n):
    def keras(s):  # InverseTimeDecay.__call__
        p = s / steps
        if stair:
            p = math.floor(p)
        return lr0 / (1 + rate * p)

    got = lrs({"type": "inverse_time", "decay_rate": rate, "decay_steps": steps, "staircase": stair},
              lr0, n)
    np.testing.assert_allclose(got, [keras(s) for s in range(n)], rtol=1e-12)


@S
@given(lr0=st.floats(1e-3, 1), end_frac=st.floats(0.0, 1.0), power=st.floats(0.2, 4.0),
       steps=st.integers(1, 100), cycle=st.booleans(), n=st.integers(1, 400))
def test_polynomial_decay(lr0, end_frac, power, steps, cycle, n):
    end = lr0 * end_frac

    def keras(s):  # PolynomialDecay.__call__
        decay_steps = steps
        if cycle:
            mult = 1.0 if s == 0 else math.ceil(s / steps)
            decay_steps = steps * mult
        else:
            s = min(s, steps)
        return (lr0 - end) * (1 - s / decay_steps) ** power + end

    shape = {"type": "polynomial", "total_iters": steps, "power": power, "end_learning_rate": end,
             "cycle": cycle}
    np.testing.assert_allclose(lrs(shape, lr0, n), [keras(s) for s in range(n)], rtol=1e-12)


@S
@given(bounds=st.lists(st.integers(0, 300), min_size=1, max_size=5, unique=True),
       data=st.data(), n=st.integers(1, 400))
def test_piecewise_constant_decay(bounds, data, n):
    bounds = sorted(bounds)
    values = data.draw(st.lists(st.floats(0, 1), min_size=len(bounds) + 1, max_size=len(bounds) + 1))

    def keras(s):  # PiecewiseConstantDecay: values[0] if s <= b0; values[i] if b[i-1] < s <= b[i]
        for b, v in zip(bounds, values, strict=False):
            if s <= b:
                return v
        return values[-1]

    got = lrs({"type": "piecewise_constant", "boundaries": bounds, "values": values}, 0.5, n)
    np.testing.assert_array_equal(got, [keras(s) for s in range(n)])


@S
@given(lr0=st.floats(1e-3, 1), t0=st.integers(1, 50), t_mul=st.integers(1, 3),
       m_mul=st.floats(0.3, 1.0), alpha=st.floats(0.0, 1.0), n=st.integers(1, 400))
def test_cosine_restarts_with_m_mul_matches_keras_cosine_decay_restarts(lr0, t0, t_mul, m_mul,
                                                                        alpha, n):
    def keras(s):  # CosineDecayRestarts.__call__ (integer t_mul, so cycles are whole steps)
        frac = s / t0
        if t_mul == 1:
            i = math.floor(frac)
            frac -= i
        else:
            i = math.floor(math.log(1 - frac * (1 - t_mul)) / math.log(t_mul))
            # Keras's float log misrounds exactly at a cycle start (t0=1, t_mul=3, step 121:
            # log(243)/log(3) = 4.999...); correct the index with the exact integer cycle
            # starts, which is what the formula means.
            while s >= t0 * (t_mul ** (i + 1) - 1) // (t_mul - 1):
                i += 1
            while i > 0 and s < t0 * (t_mul ** i - 1) // (t_mul - 1):
                i -= 1
            start = (1 - t_mul ** i) / (1 - t_mul)
            frac = (frac - start) / t_mul ** i
        cos_dec = 0.5 * m_mul ** i * (1 + math.cos(math.pi * frac))
        return lr0 * ((1 - alpha) * cos_dec + alpha)

    shape = {"type": "cosine_restarts", "T_0": t0, "T_mult": t_mul, "eta_min": lr0 * alpha,
             "m_mul": m_mul}
    np.testing.assert_allclose(lrs(shape, lr0, n), [keras(s) for s in range(n)], rtol=1e-9,
                               atol=1e-15)


def test_rex_and_wsd_reference_profiles():
    """REX: (1-z)/(1-z/2) (paper, arXiv 2107.04197); WSD 1-sqrt cool-down (Hägele et al. 2024,
    epfml/schedules-and-scaling: hold until N - int(fract_decay * N))."""
    z = np.arange(101) / 100
    np.testing.assert_allclose(lrs({"type": "rex"}, 1.0, 101, 100), (1 - z) / (1 - z / 2),
                               rtol=1e-12)
    got = lrs({"type": "wsd", "decay_fraction": 0.2, "decay_shape": "1-sqrt"}, 1.0, 101, 100)
    n_hold = 100 - int(0.2 * 100)
    ref = [1.0 if t < n_hold else 1 - math.sqrt((t - n_hold) / 20) for t in range(101)]
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------- the real Keras 3 schedules


@pytest.fixture(scope="module")
def keras_schedules():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, not torch")
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")  # Keras computes a schedule in floatx: float64 for 1e-12

    def run(schedule, n):
        return np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in range(n)])

    yield keras.optimizers.schedules, run
    keras.config.set_floatx(floatx)


CASES = [  # (our shape, base_lr, Keras schedule class name, its arguments)
    ({"type": "exponential", "decay_rate": 0.7, "decay_steps": 9, "staircase": False}, 0.3,
     "ExponentialDecay", {"initial_learning_rate": 0.3, "decay_steps": 9, "decay_rate": 0.7}),
    ({"type": "exponential", "decay_rate": 0.5, "decay_steps": 7, "staircase": True}, 0.1,
     "ExponentialDecay",
     {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.5, "staircase": True}),
    ({"type": "inverse_time", "decay_rate": 2.5, "decay_steps": 6, "staircase": False}, 0.2,
     "InverseTimeDecay", {"initial_learning_rate": 0.2, "decay_steps": 6, "decay_rate": 2.5}),
    ({"type": "inverse_time", "decay_rate": 0.5, "decay_steps": 4, "staircase": True}, 0.2,
     "InverseTimeDecay",
     {"initial_learning_rate": 0.2, "decay_steps": 4, "decay_rate": 0.5, "staircase": True}),
    ({"type": "polynomial", "total_iters": 40, "power": 2.0, "end_learning_rate": 0.01, "cycle": False},
     0.1, "PolynomialDecay",
     {"initial_learning_rate": 0.1, "decay_steps": 40, "end_learning_rate": 0.01, "power": 2.0}),
    ({"type": "polynomial", "total_iters": 15, "power": 0.5, "end_learning_rate": 0.0, "cycle": True},
     0.1, "PolynomialDecay",
     {"initial_learning_rate": 0.1, "decay_steps": 15, "end_learning_rate": 0.0, "power": 0.5,
      "cycle": True}),
    ({"type": "piecewise_constant", "boundaries": [10, 30, 31], "values": [0.5, 0.2, 0.1, 0.05]},
     0.5, "PiecewiseConstantDecay", {"boundaries": [10, 30, 31], "values": [0.5, 0.2, 0.1, 0.05]}),
    ({"type": "cosine_restarts", "T_0": 8, "T_mult": 2, "eta_min": 0.01, "m_mul": 0.8}, 0.1,
     "CosineDecayRestarts",
     {"initial_learning_rate": 0.1, "first_decay_steps": 8, "t_mul": 2.0, "m_mul": 0.8, "alpha": 0.1}),
    ({"type": "cosine_restarts", "T_0": 5, "T_mult": 1, "eta_min": 0.0, "m_mul": 1.0}, 0.1,
     "CosineDecayRestarts",
     {"initial_learning_rate": 0.1, "first_decay_steps": 5, "t_mul": 1.0, "m_mul": 1.0, "alpha": 0.0}),
]


@pytest.mark.parametrize(("shape", "base_lr", "name", "kwargs"), CASES,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_the_real_keras_schedule_step_for_step(keras_schedules, shape, base_lr, name, kwargs):
    schedules, run = keras_schedules
    n = 150
    want = run(getattr(schedules, name)(**kwargs), n)
    np.testing.assert_allclose(lrs(shape, base_lr, n), want, rtol=1e-12, atol=1e-15)
