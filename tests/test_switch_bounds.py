"""The per-depth switch bounds of the fat-tree family (families/fabric.py: _switch_bounds) hold every
fat-tree a depth can build: the closed form (models.network.fat_tree) never needs more switches of a
kind than the bound for the most endpoints that depth holds, and reaches it at that many endpoints."""

from types import SimpleNamespace

import pytest

from models.network import fat_tree, port_split, tier_capacity
from optimizer.mip.families.fabric import _switch_bounds


@pytest.mark.parametrize("radix,over", [(48, 1.0), (64, 1.0), (128, 1.0), (64, 3.0)])
@pytest.mark.parametrize("most", [1, 37, 900, 5000, 10**7])
def test_switch_bounds_cover_every_fat_tree(radix, over, most):
    down, up = port_split(radix, over)
    f = SimpleNamespace(radix=radix, down=down, up=up)
    caps = [min(tier_capacity(n, radix, over), most) for n in (1, 2, 3)]
    b = _switch_bounds(f, caps)
    for n in (2, 3):
        for e in sorted({1, caps[n - 1] // 3, caps[n - 1] - 1, caps[n - 1]} - {0}):
            t = fat_tree(e, radix, over, tiers=n)
            assert t.leaves <= b["leaves", n]
            if n == 2:
                assert t.spines <= b["spines", 2]
            else:
                assert t.aggregation <= b["aggregation", 3] and t.spines <= b["spines", 3]
        top = fat_tree(caps[n - 1], radix, over, tiers=n)
        assert top.leaves == b["leaves", n]
        assert (top.spines == b["spines", 2]) if n == 2 else (top.aggregation, top.spines) == (b["aggregation", 3], b["spines", 3])
