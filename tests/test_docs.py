"""The Cedar shown to policy authors in the docs is valid against the demo schema."""

from __future__ import annotations

import re
from pathlib import Path

import cedarpy
import pytest

from interceptor.config import BUNDLED_POLICY_DIR

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = (BUNDLED_POLICY_DIR / "schema.cedarschema").read_text()
BLOCKS = [
    pytest.param(block, id=f"{doc.name}#{n}")
    for doc in (ROOT / "docs" / "policies.md", ROOT / "README.md")
    for n, block in enumerate(re.findall(r"```cedar\n(.*?)```", doc.read_text(), re.DOTALL))
]


def test_docs_show_the_cookbook():
    assert len([b for b in BLOCKS if "policies.md" in b.id]) == 14  # 1-11, and 12-14 for agents


@pytest.mark.parametrize("block", BLOCKS)
def test_documented_policy_validates_against_the_schema(block: str):
    result = cedarpy.validate_policies(block, SCHEMA)
    assert result.validation_passed, [str(e) for e in result.errors]
