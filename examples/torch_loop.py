"""A plain PyTorch loop with SpecLR: the spec file drives the LR, re-planned half way.

Run: python examples/torch_loop.py   (needs: pip install 'mobile-lr[torch]')
"""

from pathlib import Path

import torch

from mobile_lr.adapters import SpecLR

torch.manual_seed(0)
x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)      # the spec's base_lr
scheduler = SpecLR(optimizer, Path(__file__).with_name("spec.json"), total_steps=120)

for step in range(100):
    batch = torch.randint(0, 256, (32,))
    loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    if step == 49:
        scheduler.replan(100)        # the budget shrank: the schedule now ends at step 100
    if step % 25 == 24:
        print(f"step {step + 1:3d}  loss {loss.item():.3f}  lr {scheduler.get_last_lr()[0]:.5f}")
print("final lr", scheduler.get_last_lr()[0])
