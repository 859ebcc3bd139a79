"""The README once promised ``tfship.client.swap``: it still imports, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_old_swap_path_is_a_deprecated_alias_of_deploy_swap() -> None:
    import tfship.deploy.swap

    sys.modules.pop("tfship.client.swap", None)
    with pytest.warns(DeprecationWarning, match="import from tfship.deploy.swap"):
        old = importlib.import_module("tfship.client.swap")
    assert (old.SwapOptions, old.swap, old.rollback) == (
        tfship.deploy.swap.SwapOptions, tfship.deploy.swap.swap, tfship.deploy.swap.rollback)
