"""The README tells the truth about the commands it shows: every `candor` line parses with the real
CLI, every kustomize path builds from a folder that exists, every extra it installs exists, and the
two commands name what a fresh machine needs (what `make test` and .ci/run install)."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest

from candor.cli import build_parser
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.split("#")[0].strip()]


@pytest.mark.parametrize("line", [x for x in shell_lines() if x.startswith("candor ")])
def test_every_candor_command_in_the_readme_parses(line):
    build_parser().parse_args(shlex.split(line)[1:])  # SystemExit(2) on an unknown verb or flag


def test_every_kustomize_path_in_the_readme_exists():
    paths = re.findall(r"kubectl apply -k (\S+)", README)
    assert len(paths) >= 3
    for path in paths:
        assert (REPO_ROOT / path / "kustomization.yaml").is_file(), path


def test_every_extra_the_readme_installs_exists():
    extras = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {e for group in re.findall(r"candor\[([a-z,]+)\]|\.\[([a-z,]+)\]", README) for g in group if g for e in g.split(",")}
    assert named and named <= extras, named - extras
    assert not re.search(r"candor\[gpu\]'|candor\[server\]'", README)  # a runtime must come with the server extra


def test_the_two_commands_name_what_make_test_installs():
    section = README.split("## Two commands", 1)[1].split("##", 1)[0]
    installer = (REPO_ROOT / ".ci/system-packages").read_text()
    for package in ("prometheus", "docker-compose", "postgresql", "npm"):
        assert f"missing+=({package})" in installer, package
        assert package in section, package
    makefile = (REPO_ROOT / "Makefile").read_text()
    test_target = re.search(r"^test: (.*)$", makefile, flags=re.M).group(1).split()
    assert "system-packages" in test_target and "bash .ci/system-packages" in makefile
    assert "bash .ci/system-packages" in (REPO_ROOT / ".ci/run").read_text()
