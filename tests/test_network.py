"""Fat-tree sizing against hand-counted trees."""

import pytest

from models.network import fat_tree, port_split, tier_capacity


def test_capacities_match_al_fares():
    # radix 64 non-blocking: 64, 64^2/2 = 2048, 64^3/4 = 65536 endpoints
    assert [tier_capacity(n, 64, 1.0) for n in (1, 2, 3)] == [64, 2048, 65536]


def test_single_switch():
    t = fat_tree(40, 64)
    assert (t.tiers, t.switches, t.links, t.optics) == (1, 1, 0, 0)


def test_two_tier_by_hand():
    # 1024 endpoints, radix 64: 32 down per leaf -> 32 leaves; 32*32 uplinks / 64 ports -> 16 spines
    t = fat_tree(1024, 64)
    assert (t.tiers, t.leaves, t.spines, t.switches) == (2, 32, 16, 48)
    assert t.links == 1024 and t.optics == 2048


def test_three_tier_by_hand():
    # 4096 endpoints, radix 64: 128 leaves, 128*32/32 = 128 aggregation, 64 cores; links 128*32 + 128*32
    t = fat_tree(4096, 64)
    assert (t.tiers, t.leaves, t.aggregation, t.spines) == (3, 128, 128, 64)
    assert t.links == 8192 and t.optics == 16384


def test_oversubscription_trades_uplinks():
    assert port_split(64, 3.0) == (48, 16)
    t = fat_tree(1024, 64, 3.0)  # 22 leaves (ceil 1024/48), 22*16/64 -> 6 spines
    assert (t.leaves, t.spines, t.links) == (22, 6, 352)


def test_too_many_endpoints_is_a_clear_error():
    with pytest.raises(ValueError, match="exceed a 3-tier fat-tree of radix 8"):
        fat_tree(10_000, 8)
