"""The schedule drives real optimizers: torch's LRScheduler protocol and ORT Training's Optimizer."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from mobile_lr.adapters.ort_lr import OrtScheduleDriver
from mobile_lr.adapters.torch_lr import SpecLR
from mobile_lr.schedules import parse_spec

SPEC = {"format": "mobile-lr.schedule/1", "base_lr": 0.05,
        "warmup": {"steps": 5, "start_factor": 0.2},
        "shape": {"type": "cosine", "eta_min": 0.001}}


def make_opt(lr=0.05, groups=1):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    return torch.optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)])


def test_speclr_follows_the_schedule_and_replans():
    opt = make_opt(groups=2)
    sched = SpecLR(opt, SPEC, total_steps=100)
    ref = parse_spec(SPEC)
    seen = [sched.get_last_lr()]
    for t in range(1, 60):
        opt.step()
        sched.step()
        if t == 30:
            sched.replan(50)
        seen.append(sched.get_last_lr())
    plan = [(0, 100), (30, 50)]
    for t, (g0, g1) in enumerate(seen):
        want = ref.lr(t, plan if t >= 30 else plan[:1])
        assert g0 == pytest.approx(want, rel=1e-12)
        assert g1 == pytest.approx(2 * want, rel=1e-12)  # the second group keeps its ratio
    assert seen[50][0] == pytest.approx(0.001, rel=1e-12)


def test_speclr_state_dict_is_json_and_resumes_exactly():
    opt = make_opt()
    a = SpecLR(opt, SPEC, total_steps=80)
    for _ in range(20):
        opt.step()
        a.step()
    a.replan(40)
    state = json.loads(json.dumps(a.state_dict()))
    rest_a = []
    for _ in range(25):
        opt.step()
        a.step()
        rest_a.append(a.get_last_lr()[0])
    opt2 = make_opt()
    b = SpecLR(opt2, SPEC, total_steps=999)
    b.load_state_dict(state)
    rest_b = []
    for _ in range(25):
        opt2.step()
        b.step()
        rest_b.append(b.get_last_lr()[0])
    assert rest_a == rest_b


def test_speclr_plateau_reacts_to_metrics():
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1,
            "shape": {"type": "plateau", "patience": 1, "factor": 0.5}}
    opt = make_opt(lr=0.1)
    sched = SpecLR(opt, spec, total_steps=10)
    for metric in (1.0, 1.0, 1.0):
        sched.observe(metric)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.fixture(scope="module")
def ort_artifacts(tmp_path_factory):
    """A real ORT Training artifact set for a 4->3 linear classifier with plain SGD."""
    import onnx
    from onnxruntime.training import artifacts

    d = tmp_path_factory.mktemp("ort")
    model = torch.nn.Linear(4, 3)
    torch.onnx.export(model, torch.randn(2, 4), d / "base.onnx", input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "b"}, "output": {0: "b"}},
                      opset_version=17, do_constant_folding=False, dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING)
    base = onnx.load(str(d / "base.onnx"))
    names = [init.name for init in base.graph.initializer]
    out = d / "artifacts"
    out.mkdir()
    artifacts.generate_artifacts(base, requires_grad=names, frozen_params=[],
                                 loss=artifacts.LossType.CrossEntropyLoss,
                                 optimizer=artifacts.OptimType.SGD, artifact_directory=out)
    return out


def test_ort_driver_sets_the_lr_every_step_and_the_update_uses_it(ort_artifacts):
    from onnxruntime.training.api import CheckpointState, Module, Optimizer

    state = CheckpointState.load_checkpoint(str(ort_artifacts / "checkpoint"))
    module = Module(str(ort_artifacts / "training_model.onnx"), state,
                    str(ort_artifacts / "eval_model.onnx"))
    optimizer = Optimizer(str(ort_artifacts / "optimizer_model.onnx"), module)
    schedule = parse_spec(SPEC)
    driver = OrtScheduleDriver(optimizer, schedule, total_steps=30)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=8).astype(np.int64)
    module.train()
    for t in range(12):
        assert optimizer.get_learning_rate() == pytest.approx(schedule.lr(t, [(0, 30)]), rel=1e-6)
        before = module.get_contiguous_parameters().numpy().copy()
        module(x, y)
        grads = np.concatenate([state.parameters[n].grad.ravel() for n in ("weight", "bias")])
        optimizer.step()
        after = module.get_contiguous_parameters().numpy()
        # plain SGD: the update is exactly lr * grad (float32), so the LR really was applied
        np.testing.assert_allclose(before - after, schedule.lr(t, [(0, 30)]) * grads, rtol=1e-4,
                                   atol=1e-7)
        module.lazy_reset_grad()
        driver.step()
    driver.replan(15)
    assert optimizer.get_learning_rate() == pytest.approx(schedule.lr(12, [(0, 30), (12, 15)]),
                                                          rel=1e-6)


# ---------------------------------------------------------------------- PyTorch conventions

PLATEAU = {"format": "mobile-lr.schedule/1", "base_lr": 0.1,
           "shape": {"type": "plateau", "patience": 2, "factor": 0.5, "threshold": 0.01,
                     "cooldown": 1, "min_lr": 0.004}}


def test_speclr_step_metric_is_reduce_lr_on_plateau_step_for_step():
    """`sched.step(val_loss)` as with ReduceLROnPlateau, compared with the real one (1e-9)."""
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.5, 0.6, 0.6, 0.6]
    opt_a, opt_b = make_opt(lr=0.1), make_opt(lr=0.1)
    ours = SpecLR(opt_a, PLATEAU, total_steps=100)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_b, patience=2, factor=0.5, threshold=0.01,
                                                     cooldown=1, min_lr=0.004)
    seen = []
    for m in metrics:
        opt_a.step()
        opt_b.step()
        ours.step(m)
        ref.step(m)
        assert ours.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], rel=1e-9)
        seen.append(ours.get_last_lr()[0])
    assert len(set(seen)) >= 3  # the metrics did cut the LR (twice at least)
    assert ours.last_epoch == len(metrics)


def test_speclr_step_metric_on_a_step_schedule_is_refused():
    sched = SpecLR(make_opt(), SPEC, total_steps=10)
    with pytest.raises(ValueError, match="a metric for a 'plateau' schedule; this one's shape is 'cosine'"):
        sched.step(0.5)


@pytest.mark.parametrize("total", [0, -3, 2.5, True, "10"])
def test_speclr_refuses_a_total_that_is_not_a_positive_integer(total):
    with pytest.raises(ValueError, match="total_steps"):
        SpecLR(make_opt(), SPEC, total_steps=total)


def test_speclr_replan_refuses_a_non_integer_total():
    sched = SpecLR(make_opt(), SPEC, total_steps=10)
    with pytest.raises(ValueError, match=r"total_steps: expected an integer, got 2\.7"):
        sched.replan(2.7)
    with pytest.raises(ValueError, match="total_steps: 0 is out of range"):
        sched.replan(0)
    sched.replan(6.0)  # an integral float is the integer
    assert sched.plan == [(0, 10), (0, 6)]


def test_speclr_warns_when_the_optimizer_lr_is_not_the_spec_base_lr():
    with pytest.warns(UserWarning, match=r"optimizer's lr 0\.01 is not the spec's base_lr 0\.05"):
        sched = SpecLR(make_opt(lr=0.01), SPEC, total_steps=10)
    assert sched.get_last_lr()[0] == pytest.approx(parse_spec(SPEC).lr(0, [(0, 10)]) * 0.2, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpecLR(make_opt(lr=0.05, groups=2), SPEC, total_steps=10)  # group 0 at base_lr: no warning


def test_ort_driver_takes_a_spec_dict_or_path_and_its_state_holds_the_spec(tmp_path):
    class Recorder:  # the two methods of onnxruntime.training.api.Optimizer the driver calls
        lr = None

        def set_learning_rate(self, learning_rate):
            self.lr = learning_rate

        def get_learning_rate(self):
            return self.lr

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    a = OrtScheduleDriver(Recorder(), path, total_steps=40)
    b = OrtScheduleDriver(Recorder(), SPEC, total_steps=40)
    for _ in range(7):
        assert a.step() == b.step()
    a.replan(20)
    state = json.loads(json.dumps(a.state_dict()))
    assert state["spec"] == SPEC and state["plan"] == [[0, 40], [7, 20]] and state["step"] == 7
    other = {**SPEC, "base_lr": 0.5}
    c = OrtScheduleDriver(Recorder(), other, total_steps=999)
    c.load_state_dict(state)  # the spec comes back with the state, not from the constructor
    assert c.schedule.base_lr == 0.05
    assert [a.step() for _ in range(5)] == [c.step() for _ in range(5)]
    with pytest.raises(ValueError, match="total_steps"):
        OrtScheduleDriver(Recorder(), SPEC, total_steps=0)
