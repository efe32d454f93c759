"""The benchmark's gateway generator: the sizes it promises, every policy shape of the mix, strict validity against
the schema it writes, and one policy set per seed (benchmarks and property tests rely on all four)."""

from __future__ import annotations

from pathlib import Path

import cedarpy
import pytest

from benchmarks.generate import generate, layout
from interceptor.policy import PolicyEngine


@pytest.mark.parametrize(("tools", "targets", "per_target"), [(50, 2, 25), (500, 20, 25), (5000, 100, 50)])
def test_layout_follows_the_issue_model(tools: int, targets: int, per_target: int) -> None:
    assert layout(tools) == [(f"target{t:02d}", per_target) for t in range(targets)]


def test_uneven_sizes_spread_every_tool(tmp_path: Path) -> None:
    names = generate(tmp_path, 5, 137)
    assert len(names) == len(set(names)) == 137
    assert sum(count for _, count in layout(137)) == 137


def test_writes_a_schema_and_policies_that_validate_strictly(tmp_path: Path) -> None:
    names = generate(tmp_path, 200, 50)
    schema = (tmp_path / "schema.cedarschema").read_text(encoding="utf-8")
    policies = (tmp_path / "generated.cedar").read_text(encoding="utf-8")
    assert all(f'action "{name}" in' in schema for name in names)
    result = cedarpy.validate_policies(policies, schema)
    assert result.validation_passed, [str(e) for e in result.errors][:3]
    assert len(PolicyEngine.load(tmp_path).policy_ids) == 200


def test_every_shape_of_the_mix_appears_even_at_ten_policies(tmp_path: Path) -> None:
    generate(tmp_path, 10, 50)
    text = (tmp_path / "generated.cedar").read_text(encoding="utf-8")
    assert text.count("@id(") == 10
    for shape in (
        'permit (principal in Teleport::Role::"r',  # role x tool and group permits
        'action in Teleport::Action::"target',  # action-group permit
        "action in [Teleport::Action::",  # list of tools
        "context.input has ",  # argument condition
        'principal.hasTag("team") && principal.getTag("team")',  # trait condition
        "forbid (principal in Teleport::Role::",  # argument forbid
        "when { principal.bot }",  # bot forbid
    ):
        assert shape in text, shape


def test_about_half_are_role_x_tool_permits(tmp_path: Path) -> None:
    generate(tmp_path, 400, 500)
    policies = (tmp_path / "generated.cedar").read_text(encoding="utf-8").split("\n\n")
    role_tool = [p for p in policies if "permit (principal in" in p and "action ==" in p and "when" not in p]
    assert len(role_tool) == 200


def test_one_policy_set_per_seed(tmp_path: Path) -> None:
    texts = []
    for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / folder).mkdir()
        generate(tmp_path / folder, 100, 500, seed=seed)
        texts.append((tmp_path / folder / "generated.cedar").read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
