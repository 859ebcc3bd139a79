"""Deprecated alias of :mod:`tfship.deploy.swap`: import ``from tfship.deploy.swap`` instead.

Hot-swap is orchestration (it exports, rewrites server configs and checks parity), so it lives in
the deploy layer above the client. This module stays only because earlier READMEs promised
``from tfship.client.swap import SwapOptions, swap, rollback``; it is the one allowed upward import
(see tests/test_layers.py) and warns on import.
"""

from __future__ import annotations

import warnings

from tfship.deploy.swap import SwapOptions, SwapRecord, rollback, signature_differences, swap

__all__ = ["SwapOptions", "swap", "rollback", "signature_differences", "SwapRecord"]

warnings.warn("tfship.client.swap is deprecated: import from tfship.deploy.swap instead",
              DeprecationWarning, stacklevel=2)
