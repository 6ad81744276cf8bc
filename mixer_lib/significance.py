"""What "an effect" means in this project, decided once: a difference more than two standard
errors from zero. The claims ledger, the autopsy, its figure and accuracy comparisons all ask
these functions."""

from __future__ import annotations

SE_MULTIPLE = 2.0  # an effect: |difference| > SE_MULTIPLE standard errors


def significant(effect: float, se: float) -> bool:
    """``effect`` more than two standard errors ``se`` from zero."""
    return abs(effect) > SE_MULTIPLE * se


def gain(effect: float, se: float) -> bool:
    """A significant improvement."""
    return effect > SE_MULTIPLE * se


def loss(effect: float, se: float) -> bool:
    """A significant loss."""
    return effect < -SE_MULTIPLE * se
