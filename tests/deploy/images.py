"""The repo's Dockerfile read by stage (dockerfile-parse does the parsing and ARG expansion)."""

from __future__ import annotations

import json
import re

from dockerfile_parse import DockerfileParser

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
PINNED = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+[\w.-]*$")  # a numbered release tag, never "latest" or a bare major


def stages(build_args: dict[str, str] | None = None) -> dict[str, dict]:
    """{stage name: {"base": resolved FROM image, "instructions": [(INSTRUCTION, value), ...]}}, in file order."""
    parser = DockerfileParser(str(DOCKERFILE), build_args=build_args or {}, cache_content=True)
    bases = iter(parser.parent_images)
    found: dict[str, dict] = {}
    current = None
    for item in parser.structure:
        if item["instruction"] == "FROM":
            name = item["value"].split()[-1]
            current = found[name] = {"base": next(bases), "instructions": []}
        elif current is not None and item["instruction"] != "COMMENT":
            current["instructions"].append((item["instruction"], item["value"]))
    return found


def last(stage: dict, instruction: str) -> str | None:
    values = [v for i, v in stage["instructions"] if i == instruction]
    return values[-1] if values else None


def exec_form(value: str) -> list[str]:
    """The argument list of an exec-form ENTRYPOINT/CMD (a JSON array)."""
    return json.loads(value)


def external_bases(build_args: dict[str, str] | None = None) -> list[str]:
    """The images the build pulls (FROM lines that name no earlier stage)."""
    found = stages(build_args)
    return [s["base"] for s in found.values() if s["base"] not in found]
