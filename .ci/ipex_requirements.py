"""Print, one a line, what the IPEX environment installs besides torch 2.8 and IPEX: the harness's
dependencies from pyproject.toml without its torch pin (IPEX 2.8 needs torch 2.8), and pytest.

    pip install -r <(python .ci/ipex_requirements.py)      (docs/ipex.md)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path


def requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    # the test extra's pytest pin, and none of the rest: the IPEX stage runs one e2e module
    pytest = [r for r in project["optional-dependencies"]["test"] if re.match(r"pytest\b(?!-)", r)]
    return [r for r in project["dependencies"] if not re.match(r"torch\b", r)] + pytest


if __name__ == "__main__":
    print("\n".join(requirements(Path(__file__).parents[1] / "pyproject.toml")))
