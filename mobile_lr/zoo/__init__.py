"""The model zoo: realistic on-device models, each with data it trains on here and fine-tuning modes.

==================== ========================================= ============================
recipe               model (parameters at the default size)     data (generated, seeded)
==================== ========================================= ============================
``mobilenetv2``      MobileNetV2, BatchNorm, ReLU6 (2.24 M)     colour photos of the digits
``ds-cnn``           keyword-spotting DS-CNN, BatchNorm (23 k)  keyword spectrograms 49 x 10
``text-transformer`` embedding, LayerNorm, attention (0.57 M)   intent token sequences
``gru-sensor``       two GRU layers (0.22 M)                    accelerometer windows 64 x 3
``lstm-sensor``      two LSTM layers (0.28 M)                   accelerometer windows 64 x 3
==================== ========================================= ============================

Size options: ``width`` everywhere; ``depth``, ``stages``, ``resolution``
(mobilenetv2); ``blocks`` (ds-cnn); ``layers`` (text-transformer, sensors);
``steps`` (sensor window); ``vocab``, ``seq_len`` (text-transformer).

Every recipe takes ``mode`` (``head``, ``last-k``, ``bias+head``, ``lora``:
:mod:`.modes`), ``k``, ``rank``, ``seed`` and ``batch_size``; ``mobile-lr
export NAME --mode MODE --option width=0.5`` passes them. Each recipe carries
its task's population data (``pretrain_data``, for the desktop) and one
user's shifted data (``user_data(seed, n_train)``, for the phone); see
:mod:`.tasks`. docs/ZOO.md has the measurements.
"""

from __future__ import annotations

__all__ = ["MODES", "ZOO"]

from mobile_lr.zoo.modes import MODES

ZOO = ("mobilenetv2", "ds-cnn", "text-transformer", "gru-sensor", "lstm-sensor")
