"""A Hugging Face Trainer driven by the battery-aware manager (ManagerCallback).

A tiny BERT (built from a config: nothing is downloaded) learns a toy task on the CPU while
a simulated mid-range phone at 31 % battery pays for every step. The manager sets the LR of
each optimizer step from spec.json, re-planned to what the battery allows under policy.json,
and stops the Trainer at the floor; the checkpoint it stops with holds the manager's state,
and `trainer.train(resume_from_checkpoint=True)` after charging would continue the run.

Run: python examples/hf_trainer.py   (needs: pip install 'mobile-lr[transformers]')
"""

import tempfile
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from mobile_lr.budget import load_policy
from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
from mobile_lr.integrations.driver import SimulatedPhone
from mobile_lr.integrations.transformers import STATE_FILE, ManagerCallback
from mobile_lr.manager import ScheduleManager
from mobile_lr.schedules import load_spec

here = Path(__file__).parent
spec = load_spec(here / "spec.json")
profile = load_profile("mid-range")
phone = SimulatedPhone(SimulatedDevice(profile, DeviceState.initial(profile, 0.31), step_seconds=4.0))
manager = ScheduleManager(spec, profile, load_policy(here / "policy.json"))
manager.update_device(phone.read())
manager.begin_window()

torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(
    vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=16, num_labels=2))
ids = torch.randint(1, 64, (512, 8))
data = [{"input_ids": row, "attention_mask": torch.ones(8, dtype=torch.long), "labels": int(row[0] < 32)}
        for row in ids]                       # the label is in the first token: learnable

with tempfile.TemporaryDirectory() as out:
    args = TrainingArguments(output_dir=out, max_steps=spec.total_steps, per_device_train_batch_size=16,
                             learning_rate=spec.base_lr, lr_scheduler_type="constant", save_strategy="steps",
                             save_steps=50, logging_steps=25, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[ManagerCallback(manager, phone)])
    result = trainer.train()
    checkpoint = Path(out) / f"checkpoint-{trainer.state.global_step}" / STATE_FILE
    stop = manager.stopped.reason if manager.stopped else "trainer"
    print(f"stop: {stop}  steps: {trainer.state.global_step}  planned: {manager.planned_total}"
          f"  loss: {result.training_loss:.3f}")
    print(f"battery {phone.read().level:.3f}  manager state saved: {checkpoint.is_file()}")
