"""The demo's agent policies (`agents.cedar`) and their policy tests (`agents.yaml`, expanded to
`agents.cedartests.json`): the repository's policies do not admit any agent, so a gateway with AGENT_MODE on
refuses every delegated call until its administrator writes agent policies (README "Agents"). The demo, the fuzzer
and the tests use these, next to the repository's policies."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
REPOSITORY_POLICIES = FOLDER.parent.parent / "policies"


def write_policy_folder(folder: Path) -> Path:
    """`folder` (created) holding the repository's policies and schema plus `agents.cedar` (no bundle: the set is
    validated when an interceptor loads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in [*REPOSITORY_POLICIES.glob("*.cedar"), REPOSITORY_POLICIES / "schema.cedarschema"]:
        shutil.copy(path, folder / path.name)
    shutil.copy(FOLDER / "agents.cedar", folder / "agents.cedar")
    return folder


@contextmanager
def policy_folder() -> Iterator[Path]:
    """`write_policy_folder` in a temporary folder, for the length of the block."""
    with tempfile.TemporaryDirectory() as tmp:
        yield write_policy_folder(Path(tmp))
