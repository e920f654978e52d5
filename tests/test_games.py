"""The game registry: required games, consistent specs, helpful unknown-game errors."""

from __future__ import annotations

import pytest

from moc_envs import GAMES, UnknownGameError, get_game

REQUIRED = (
    "Pong", "Boxing", "Skiing", "Freeway", "Breakout", "SpaceInvaders",
    "MsPacman", "Tennis", "Seaquest", "Asterix", "Carnival",
)  # fmt: skip


def test_required_games_registered() -> None:
    assert set(REQUIRED) <= set(GAMES)


@pytest.mark.parametrize("name", sorted(GAMES))
def test_spec_is_consistent(name: str) -> None:
    spec = GAMES[name]
    assert spec.ale_id == f"ALE/{name}-v5"
    assert spec.n_slots == sum(c.slots for c in spec.categories) > 0
    indexes = [lab.index for lab in spec.ram_labels]
    assert all(0 <= i < 128 for i in indexes)
    assert len(set(spec.ram_label_names)) == len(spec.ram_labels)
    for link in spec.label_links:
        assert link.label in spec.ram_label_names, link
        assert set(link.categories) <= set(spec.category_names), link


@pytest.mark.parametrize("name", sorted(GAMES))
def test_categories_are_ocatari_names(name: str) -> None:
    import ocatari.ram  # noqa: F401  (loads the per-game modules)
    from ocatari.ram.extract_ram_info import get_max_objects

    ocatari_max = get_max_objects(name, False)
    for cat in GAMES[name].categories:
        assert cat.name in ocatari_max, f"{name}: {cat.name} not an OCAtari category"
        assert cat.slots >= ocatari_max[cat.name]


def test_specs_are_immutable() -> None:
    with pytest.raises(AttributeError):
        get_game("Pong").ale_id = "ALE/Boxing-v5"  # type: ignore[misc]


def test_lookup_is_case_insensitive() -> None:
    assert get_game("pong") is get_game("Pong")
    assert get_game("spaceinvaders").name == "SpaceInvaders"


def test_unknown_game_lists_supported_and_suggests() -> None:
    with pytest.raises(
        UnknownGameError, match=r"Unknown game 'Pongg'.*Supported: .*Boxing.*Pong"
    ) as err:
        get_game("Pongg")
    assert "Did you mean 'Pong'?" in str(err.value)
