"""Accelerometer windows ``(steps, 3)`` of six activities, generated (in units of g).

The activities of the human-activity-recognition benchmarks: walking, running,
upstairs, downstairs, sitting, standing. In the body frame (x forward, y up,
z lateral) gravity points down (sitting: the thigh is horizontal, so it points
along x); the gait adds a vertical oscillation at the cadence, a forward one
a quarter period behind, a lateral sway at half the cadence, and per activity
its own harmonics: a strong second harmonic climbing stairs, sharp heel-strike
impacts going down. The phone's frame is the body frame turned by how the
phone sits in the pocket.

A person's style is that orientation, their cadence and their vigour; the
population's phones sit within about 15 degrees of upright, a user's at 60 to
120 degrees about a random axis (another pocket, upside down), with their own
cadence (25 to 35 % slower or quicker) and a sensor offset.

>>> task = Motion()
>>> train, _ = task.population()
>>> train.x.shape, train.x.dtype, task.labels[:2]
((1000, 64, 3), dtype('float32'), ('walking', 'running'))
>>> round(float(np.linalg.norm(train.x[train.y == 5].mean(axis=(0, 1)))), 1)  # standing: gravity
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobile_lr.validation import ValidationError
from mobile_lr.zoo.tasks import GeneratedTask

__all__ = ["ACTIVITIES", "Motion"]

ACTIVITIES = ("walking", "running", "upstairs", "downstairs", "sitting", "standing")
# cadence (Hz), vertical amplitude (g), second-harmonic share, impact share
_GAITS = {"walking": (1.9, 0.35, 0.2, 0.0), "running": (2.8, 1.0, 0.3, 0.2),
          "upstairs": (1.6, 0.3, 0.7, 0.0), "downstairs": (2.1, 0.45, 0.2, 0.8),
          "sitting": (0.0, 0.0, 0.0, 0.0), "standing": (0.0, 0.0, 0.0, 0.0)}


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rodrigues' rotation matrix about ``axis``."""
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


class Motion(GeneratedTask):
    """``(steps, 3)`` accelerometer windows sampled at ``rate_hz``."""

    name = "motion"
    labels = ACTIVITIES

    def __init__(self, steps: int = 64, rate_hz: float = 32.0) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 4 <= steps <= 4096:
            raise ValidationError("steps", f"{steps!r} is out of range", "an integer in [4, 4096]")
        self.steps, self.rate_hz = steps, rate_hz
        self.input_shape = (steps, 3)

    def population_style(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"turn": _rotation(rng.normal(size=3), rng.uniform(0, 15)), "cadence": rng.uniform(0.9, 1.1),
                "vigour": rng.uniform(0.85, 1.15), "offset": np.zeros(3), "noise": 0.03}

    def user_style(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"turn": _rotation(rng.normal(size=3), rng.uniform(60, 120)),
                "cadence": 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.25, 0.35),
                "vigour": rng.uniform(0.7, 1.3), "offset": rng.normal(0.0, 0.08, 3), "noise": 0.05}

    def render(self, rng: np.random.Generator, label: int, style: Any, user: bool) -> np.ndarray:
        f, amp, h2, impact = _GAITS[ACTIVITIES[label]]
        jitter = 0.05 if user else 0.0
        f *= style["cadence"] * (1.0 + jitter * rng.normal())
        amp *= style["vigour"] * (1.0 + jitter * rng.normal())
        t = np.arange(self.steps) / self.rate_hz
        phase = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
        body = np.zeros((self.steps, 3))
        body[:, 1] = -1.0 if ACTIVITIES[label] != "sitting" else 0.0
        body[:, 0] = -1.0 if ACTIVITIES[label] == "sitting" else 0.0
        strikes = 3.0 * impact * np.maximum(np.sin(phase), 0) ** 8
        body[:, 1] += amp * (np.sin(phase) + h2 * np.sin(2 * phase) + strikes)
        body[:, 0] += 0.5 * amp * np.sin(phase - np.pi / 2)
        body[:, 2] += 0.3 * amp * np.sin(phase / 2)
        turn = style["turn"]
        if user:
            turn = turn @ _rotation(rng.normal(size=3), rng.uniform(0, 5))
        x = body @ turn.T + style["offset"] + rng.normal(0.0, style["noise"], body.shape)
        return x.astype(np.float32)
