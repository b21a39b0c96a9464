"""The step context: the loop's duties around a method's step (device, memory format, DDP, mixed precision).

A method (:mod:`i2i.cyclegan.methods`) places its modules and runs its forward and backward passes through a
:class:`StepContext`, so every method gets the run's device, ``--memory-format``, DDP wrapping, autocast and fp16
loss scaling without code of its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from i2i.device import autocast, use_channels_last


class StepContext:
    """What the loop hands a method: where and how to run. It owns the loop's duties around a step, so that a
    method written against it gets every device, memory format, precision and DDP setting for free:

    - :meth:`place` moves a module to the device in the run's memory format (and marks it for DDP);
    - :meth:`forward` calls a module (its DDP wrapper once the loop has prepared it) under the run's autocast;
    - :meth:`backward` clears the optimizers' gradients, back-propagates a loss through the fp16 loss scaler and
      steps the optimizers; the loop updates the scaler once after each step.
    """

    def __init__(self, device: torch.device, precision: str, memory_format: torch.memory_format,
                 scaler: Any) -> None:
        self.device, self.precision, self.memory_format = device, precision, memory_format
        self.scaler = scaler             # torch.amp.GradScaler (enabled only for fp16); the loop saves it
        self._placed: list[nn.Module] = []
        self._wrapped: dict[int, nn.Module] = {}

    @classmethod
    def for_run(cls, device: torch.device, precision: str, memory_format: str = "auto") -> "StepContext":
        """The context of a training run: channels_last as ``--memory-format`` chooses
        (:func:`i2i.device.use_channels_last`) and a loss scaler enabled for fp16 only."""
        layout = torch.channels_last if use_channels_last(device, memory_format) else torch.contiguous_format
        return cls(device, precision, layout, torch.amp.GradScaler(device.type, enabled=precision == "fp16"))

    def place(self, module: nn.Module, ddp: bool = True) -> nn.Module:
        """``module`` on the device in the run's memory format. ``ddp``: it takes gradients in one call per
        step, so under DDP it is wrapped (by :meth:`prepare`) and :meth:`forward` calls the wrapper."""
        module.to(self.device, memory_format=self.memory_format)
        if ddp:
            self._placed.append(module)
        return module

    def prepare(self, accelerator: Any) -> None:
        """Wrap the placed modules for DDP (``accelerator.prepare``); the loop calls it once, after resume."""
        if not self._placed:
            return
        wrapped = accelerator.prepare(*self._placed)
        wrapped = wrapped if len(self._placed) > 1 else (wrapped,)
        self._wrapped = {id(m): w for m, w in zip(self._placed, wrapped)}

    def forward(self, module: nn.Module, *args: Any, ddp: bool = True, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)`` under the run's autocast; ``ddp=False`` calls the module itself, not its
        DDP wrapper (a frozen network whose gradients are not synchronised, e.g. D in the generator step)."""
        call = self._wrapped.get(id(module), module) if ddp else module
        with autocast(self.device, self.precision):
            return call(*args, **kwargs)

    def backward(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """One optimisation of ``optimizers`` on ``loss``: zero their gradients, back-propagate (scaled for
        fp16) and step each (the scaler skips a step whose gradients overflowed)."""
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for opt in optimizers:
            self.scaler.step(opt)

    def end_step(self) -> None:
        """After the method's step: the fp16 loss scale adapts once per iteration."""
        self.scaler.update()
