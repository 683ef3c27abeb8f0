"""Mixed precision: the one AMP code path.

``paddle.amp.auto_cast`` / ``GradScaler`` / ``paddle.amp.decorate`` (O2 with fp32 master weights) are always
called with the configured values; Paddle makes them no-ops on CPU, which :class:`Amp` says once.  The scaler's
private counters are read through :mod:`ernie_style.training.paddle_internals`.
"""
from __future__ import annotations

import numpy as np
import paddle

from ernie_style.config.pretrain import AmpConfig
from ernie_style.training import paddle_internals


class Amp:
    """auto_cast + GradScaler + (O2) decorate, called the same way on every device."""

    def __init__(self, cfg: AmpConfig, device: str, log=print):
        self.cfg = cfg
        self.enabled = cfg.enable
        self.fp16 = cfg.enable and cfg.dtype == "float16"
        # Dynamic loss scaling only matters for fp16; bf16 has fp32's exponent range.
        self.scaler = paddle.amp.GradScaler(
            enable=self.fp16,
            init_loss_scaling=cfg.init_loss_scaling,
            incr_every_n_steps=cfg.incr_every_n_steps,
            decr_every_n_nan_or_inf=cfg.decr_every_n_nan_or_inf,
            use_dynamic_loss_scaling=True,
        )
        self.skipped_steps = 0
        if cfg.enable and device == "cpu":
            log(f"amp: enabled in the config (dtype {cfg.dtype}, level {cfg.level}) but the device is CPU: "
                "Paddle's auto_cast/GradScaler/decorate are no-ops there, training runs in float32")

    def decorate(self, model, optimizer):
        if self.enabled and self.cfg.level == "O2":
            model, optimizer = paddle.amp.decorate(
                models=model, optimizers=optimizer, level="O2", dtype=self.cfg.dtype, master_weight=True)
        return model, optimizer

    def autocast(self):
        return paddle.amp.auto_cast(
            enable=self.enabled,
            level=self.cfg.level,
            dtype=self.cfg.dtype,
            custom_white_list=list(self.cfg.custom_white_list) or None,
            custom_black_list=list(self.cfg.custom_black_list) or None,
        )

    def scale(self, loss):
        return self.scaler.scale(loss)

    def unscale_(self, optimizer):
        if self.scaler.is_enable():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> bool:
        """Optimizer step through the scaler; returns False when it was skipped (inf/nan gradients)."""
        self.scaler.step(optimizer)
        self.scaler.update()
        skipped = bool(self.scaler.is_enable() and paddle_internals.scaler_found_inf(self.scaler))
        self.skipped_steps += int(skipped)
        return not skipped

    def stats(self) -> dict:
        """loss_scaling / num_good_steps / num_bad_steps as in ernie-1.0's log line (1.0/0/0 when inactive)."""
        if not self.scaler.is_enable():
            return {"loss_scaling": 1.0, "num_good_steps": 0, "num_bad_steps": 0, "skipped_steps": self.skipped_steps}
        return {**paddle_internals.scaler_counters(self.scaler), "skipped_steps": self.skipped_steps}

    def state_dict(self) -> dict:
        state = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in self.scaler.state_dict().items()}
        return {"scaler": state, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        scaler_state = dict(state.get("scaler") or {})
        if scaler_state:  # empty when saved by a disabled scaler (CPU, bf16, AMP off)
            if "scale" in scaler_state:
                scaler_state["scale"] = np.asarray(scaler_state["scale"], dtype="float32")
            self.scaler.load_state_dict(scaler_state)
        self.skipped_steps = int(state.get("skipped_steps", 0))
