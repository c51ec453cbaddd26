"""The manager inside the trainers people use: the real Hugging Face Trainer and Lightning Trainer.

Each trains a tiny model on the CPU (a 1-layer BERT built from a config, a 2-layer MLP) with
the manager on a simulated flagship. Because the driver passes no loss to the manager and
the phone is simulated, the manager's decisions do not depend on the model: a plain loop
over the same manager and phone (:func:`reference`) gives the LR every optimizer step must
have used, which a recording callback reads from the optimizer itself.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mobile_lr.budget import Policy
from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
from mobile_lr.integrations.driver import ManagerDriver, SimulatedPhone
from mobile_lr.manager import ScheduleManager

SPEC = {"format": "mobile-lr.schedule/1", "base_lr": 0.01, "warmup": {"steps": 3, "start_factor": 0.1},
        "shape": {"type": "cosine", "eta_min": 0.0}}
NOMINAL = 12


def world(kind: str = "plain") -> ManagerDriver:
    """A manager on a simulated flagship: ``plain`` runs every step, ``hot`` pauses to cool on
    the way, ``low`` re-plans twice and stops on the battery floor after 10 of its 12 steps."""
    p = replace(load_profile("flagship"), step_seconds=20.0 if kind == "hot" else 10.0, ambient_c=30.0)
    state = DeviceState.initial(p, 0.213 if kind == "low" else 0.9, ambient_c=30.0)
    policy = Policy(window_s=36000.0, battery_floor=0.2)
    if kind == "hot":
        hot = policy.thermal_limit_c(p) - 0.3
        state = replace(state, temperature_c=hot, thermal_status=p.status_for(hot))
    manager = ScheduleManager(SPEC, p, policy, {"nominal_steps": NOMINAL})
    manager.update_device(state)
    manager.begin_window(0.0, policy.window_s)
    return ManagerDriver(manager, SimulatedPhone(SimulatedDevice(p, state, ambient_c=30.0)))


def reference(kind: str) -> tuple[list[float], ManagerDriver]:
    """The LRs the manager gives, in a plain loop (the app's loop without a model)."""
    driver, lrs = world(kind), []
    while (lr := driver.decide()) is not None:
        lrs.append(lr)
        driver.step_started()
        driver.step_done()
    return lrs, driver


@pytest.mark.core
def test_the_worlds_do_what_the_tests_need():
    plain, d_plain = reference("plain")
    hot, d_hot = reference("hot")
    low, d_low = reference("low")
    assert len(plain) == NOMINAL and d_plain.stop_reason == "done" and d_plain.pauses == 0
    assert len(hot) == NOMINAL and d_hot.pauses > 0 and d_hot.rested_s > 0  # paused, then went on
    assert 0 < len(low) < NOMINAL and d_low.stop_reason == "budget"


@pytest.mark.core
def test_a_pause_longer_than_the_wait_ends_the_run_and_its_state_resumes_it():
    """As the app's worker: a pause it will not wait out ends the run; the saved state, read by a
    fresh manager and phone, goes on to the same LRs as a run that waited."""
    want, _ = reference("hot")
    driver = world("hot")
    driver.max_wait_s = 0.5  # below every cool-down hint
    lrs = []
    while (lr := driver.decide()) is not None:
        lrs.append(lr)
        driver.step_started()
        driver.step_done()
    assert driver.stop_reason == "paused:thermal" and len(lrs) < NOMINAL
    state = json.loads(json.dumps(driver.state_dict()))
    again = world("hot")
    again.load_state_dict(state)
    assert again.manager.step == len(lrs) and again.phone.read() == driver.phone.read()
    while (lr := again.decide()) is not None:
        lrs.append(lr)
        again.step_started()
        again.step_done()
    assert lrs == want and again.stop_reason == "done"


@pytest.mark.core
def test_the_range_test_is_refused():
    driver = world()
    with pytest.raises(ValueError, match=r"config\.range_test"):
        ManagerDriver(ScheduleManager(SPEC, driver.manager.profile, None,
                                      {"nominal_steps": 10, "range_test": {"steps": 5}}), driver.phone)


# ---------------------------------------------------------------------- Hugging Face Trainer


def hf_setup(tmp_path, kind: str, max_steps: int, callbacks):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 40, (64, 8), generator=g)
    data = [{"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long),
             "labels": int(ids[i, 0] % 2)} for i in range(64)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4,
        learning_rate=SPEC["base_lr"], lr_scheduler_type="constant", save_strategy="steps", save_steps=5,
        logging_steps=1000, report_to=[], use_cpu=True, disable_tqdm=True, seed=0, data_seed=0)
    return transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)


class LRRecorder:
    """Reads, after every optimizer step, the LR the optimizer just used (each param group)."""

    def __init__(self):
        self.lrs: list[float] = []

    def make_hf(self):
        import transformers

        recorder = self

        class Recorder(transformers.TrainerCallback):
            def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
                groups = {g["lr"] for g in optimizer.param_groups}
                assert len(groups) == 1
                recorder.lrs.append(groups.pop())

        return Recorder()


@pytest.mark.parametrize("kind", ["plain", "hot", "low"])
def test_hf_trainer_runs_the_manager_lrs_pauses_and_stops(tmp_path, kind):
    from mobile_lr.integrations.transformers import ManagerCallback

    want, ref = reference(kind)
    driver = world(kind)
    callback = ManagerCallback(driver.manager, driver.phone)
    rec = LRRecorder()
    trainer = hf_setup(tmp_path, kind, max_steps=50, callbacks=[callback, rec.make_hf()])
    trainer.train()
    assert rec.lrs == want  # the LR of every step, exactly
    assert trainer.state.global_step == len(want) == callback.manager.step
    assert callback.driver.stop_reason == ref.stop_reason and callback.driver.pauses == ref.pauses
    saved = tmp_path / "out" / f"checkpoint-{len(want)}" / "mobile_lr_manager.json"
    assert json.loads(saved.read_text())["manager"]["step"] == len(want)  # saved at the Stop


def test_hf_trainer_resumes_the_manager_from_its_checkpoint(tmp_path):
    """Stopped at step 5 (the Trainer's max_steps) and resumed from checkpoint-5: the same LRs
    as one uninterrupted run, the manager's state read back from the checkpoint."""
    from mobile_lr.integrations.transformers import ManagerCallback

    want, _ = reference("hot")
    first, rec1 = world("hot"), LRRecorder()
    hf_setup(tmp_path, "hot", 5, [ManagerCallback(first.manager, first.phone), rec1.make_hf()]).train()
    second, rec2 = world("hot"), LRRecorder()  # a fresh manager and phone: all state comes from disk
    callback = ManagerCallback(second.manager, second.phone)
    hf_setup(tmp_path, "hot", 50, [callback, rec2.make_hf()]).train(resume_from_checkpoint=True)
    assert rec1.lrs == want[:5]
    assert rec1.lrs + rec2.lrs == want
    assert callback.manager.step == NOMINAL and callback.driver.stop_reason == "done"


# ---------------------------------------------------------------------- PyTorch Lightning


def lightning_fit(tmp_path, callbacks, max_steps=50, ckpt_path=None):
    pl = pytest.importorskip("pytorch_lightning")
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):  # a scheduler of its own, which the manager must override
            opt = torch.optim.AdamW(self.parameters(), lr=SPEC["base_lr"])
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(64, 6, generator=g),
                                          torch.randint(0, 3, (64,), generator=g))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True, every_n_train_steps=5)
    trainer = pl.Trainer(max_steps=max_steps, max_epochs=100, accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[*callbacks, ckpt],
                         default_root_dir=str(tmp_path))
    trainer.fit(Tiny(), loader, ckpt_path=ckpt_path)
    return trainer


def lightning_recorder(rec: LRRecorder):
    import pytorch_lightning as pl

    class Recorder(pl.Callback):
        def on_train_start(self, trainer, pl_module):  # a hook torch runs right after optimizer.step()
            trainer.optimizers[0].register_step_post_hook(
                lambda opt, args, kwargs: rec.lrs.append(opt.param_groups[0]["lr"]))

    return Recorder()


@pytest.mark.parametrize("kind", ["plain", "hot", "low"])
def test_lightning_trainer_runs_the_manager_lrs_pauses_and_stops(tmp_path, kind):
    pytest.importorskip("pytorch_lightning")
    from mobile_lr.integrations.lightning import ManagerCallback

    want, ref = reference(kind)
    driver = world(kind)
    callback, rec = ManagerCallback(driver.manager, driver.phone), LRRecorder()
    trainer = lightning_fit(tmp_path, [callback, lightning_recorder(rec)])
    assert rec.lrs == want
    assert trainer.global_step == len(want) == callback.manager.step
    assert callback.driver.stop_reason == ref.stop_reason and callback.driver.pauses == ref.pauses


def test_lightning_trainer_resumes_the_manager_from_its_checkpoint(tmp_path):
    pytest.importorskip("pytorch_lightning")
    from mobile_lr.integrations.lightning import ManagerCallback

    want, _ = reference("hot")
    first, rec1 = world("hot"), LRRecorder()
    lightning_fit(tmp_path, [ManagerCallback(first.manager, first.phone), lightning_recorder(rec1)],
                  max_steps=5)
    second, rec2 = world("hot"), LRRecorder()
    callback = ManagerCallback(second.manager, second.phone)
    lightning_fit(tmp_path, [callback, lightning_recorder(rec2)],
                  ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert rec1.lrs == want[:5]
    assert rec1.lrs + rec2.lrs == want
    assert callback.manager.step == NOMINAL and callback.driver.stop_reason == "done"


# ---------------------------------------------------------------------- Keras 3 (torch backend)


def test_keras_spec_schedule_trains_as_the_real_keras_schedule_and_round_trips():
    """A Keras model fit with SpecSchedule ends at the weights the same fit reaches with Keras's own
    ExponentialDecay (so the optimizer used the spec's LR at every step); the config round trip
    keeps a re-plan."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()}")
    import numpy as np

    from mobile_lr.integrations.keras import SpecSchedule

    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.5,
            "shape": {"type": "exponential", "decay_rate": 0.6, "decay_steps": 4, "staircase": False}}
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(160, 6)).astype("float32"), rng.integers(0, 3, 160)

    def fit(learning_rate):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 20 steps
        return [w.copy() for w in model.get_weights()]

    ours = fit(SpecSchedule(spec, total_steps=20))
    theirs = fit(keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=4, decay_rate=0.6))
    const = fit(0.5)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, c) for a, c in zip(ours, const, strict=True))  # the schedule mattered

    schedule = SpecSchedule({**spec, "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}}, 10)
    schedule.replan(6, step=5)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, SpecSchedule) and again.plan == [(0, 10), (5, 6)]
    assert [again(t) for t in range(8)] == [schedule(t) for t in range(8)]
    assert schedule(6) == 0.0


def test_a_run_the_manager_refuses_from_the_start_changes_no_weight(tmp_path):
    """At 21 % with a 20 % floor no step is affordable: the Hugging Face Trainer still runs its
    first step (it checks the stop flag only after one), at LR 0; Lightning runs none."""
    pytest.importorskip("transformers")
    import torch

    from mobile_lr.integrations.lightning import ManagerCallback as LightningCallback
    from mobile_lr.integrations.transformers import ManagerCallback

    def refusing():
        driver = world("low")
        driver.phone.device.state = replace(driver.phone.device.state, level=0.21)
        driver.manager.update_device(driver.phone.device.state)
        return driver

    driver = refusing()
    callback = ManagerCallback(driver.manager, driver.phone)
    trainer = hf_setup(tmp_path / "hf", "low", 50, [callback])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert callback.driver.stop_reason == "paused:battery" and callback.manager.step == 0
    assert trainer.state.global_step == 1 == callback.driver.idle_steps
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    again = refusing()  # resuming that checkpoint counts the LR-0 step, and still refuses
    resumed = ManagerCallback(again.manager, again.phone)
    hf_setup(tmp_path / "hf", "low", 50, [resumed]).train(resume_from_checkpoint=True)
    assert resumed.driver.stop_reason == "paused:battery" and resumed.manager.step == 0

    driver = refusing()
    lcb = LightningCallback(driver.manager, driver.phone)
    assert lightning_fit(tmp_path / "pl", [lcb]).global_step == 0
    assert lcb.driver.stop_reason == "paused:battery"
