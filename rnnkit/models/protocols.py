"""What some models can do beyond `forward`, said as protocols (checked with isinstance, not hasattr)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class RecordsGates(Protocol):
    """A model whose recurrent layer can record its gate activations during a forward pass."""

    def record_gates(self, on: bool = True) -> None: ...

    def gate_activations(self) -> dict[str, Tensor]:
        """{"layer0.forget": (T, B, H), ...} of the last forward with recording on, detached."""
