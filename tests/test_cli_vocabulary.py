"""One CLI vocabulary: a flag two verbs share means one thing, with one type and one help text, and the
input file, the model, its version and the repository have one spelling in every verb (candor.flags)."""

from __future__ import annotations

import argparse
import re

import pytest

from candor.cli import build_parser
from tests.conftest import run_candor

# Flags whose name is shared but whose object is the verb's own, so their help says what it is.
OWN_OBJECT = {
    "--input": "the verb's own kind of file (rows, labels, labelled rows)",
    "--output": "split writes one .npz file, sweep a folder of results",
    "--method": "calibrate fits a local calibrator; recalibrate names one the server offers",
    "--seed": "train seeds weights and minibatches; simulate seeds row choice and noise",
}
# Hidden aliases for one release: never in --help. The durations of serve and of the client verbs before they
# ended in -seconds are the rest.
OLD_DURATIONS = ("--connection-idle", "--connection-age", "--default-deadline", "--max-deadline", "--poll-interval",
                 "--grace-period", "--store-timeout", "--prediction-ttl", "--timeout", "--feedback-delay", "--drift-after",
                 "--duration", "--report-every", "--wait")  # fmt: skip
OLD_SPELLINGS = ("--name", "--data", *OLD_DURATIONS)
UNITS = ("-seconds", "-ms", "-us")  # a duration flag ends in its unit; seconds unless it is a sub-millisecond knob
ONE_INPUT = ("predict", "feedback", "simulate")  # verbs that read one input file


def verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def shown_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings if o != "-h"}


def meaning(action: argparse.Action) -> tuple:
    """What a flag is, without its default: the kind of value, its choices, and its help."""
    help_text = re.sub(r"\s*\((default: [^)]*|required)\)\s*$", "", action.help or "")
    return type(action).__name__, action.type or str, tuple(action.choices or ()), help_text


def test_shared_flags_have_one_type_and_one_help_text():
    seen: dict[str, dict[tuple, list[str]]] = {}
    for verb, parser in verbs().items():
        for flag, action in shown_flags(parser).items():
            seen.setdefault(flag, {}).setdefault(meaning(action), []).append(verb)
    shared = {flag for flag, meanings in seen.items() if sum(len(v) for v in meanings.values()) > 1}
    assert {"--model", "--version", "--model-repository", "--target", "--timeout-seconds", "--json", "--coverage"} <= shared
    different = {flag: meanings for flag, meanings in seen.items()
                 if flag in shared and len(meanings) > 1 and flag not in OWN_OBJECT}  # fmt: skip
    assert different == {}
    for flag in OWN_OBJECT:  # even these agree on the kind of value (choices: the server's methods are its own)
        assert len({m[:2] for m in seen[flag]}) == 1, (flag, seen[flag])


def test_the_old_spellings_are_hidden_and_every_one_input_verb_takes_it_positionally():
    for verb, parser in verbs().items():
        assert not set(OLD_SPELLINGS) & set(shown_flags(parser)), verb
    for verb in ONE_INPUT:
        positional = [a for a in verbs()[verb]._actions if not a.option_strings and a.dest == "input"]
        assert len(positional) == 1 and "--input" in shown_flags(verbs()[verb]), verb


def test_help_text_lists_no_old_spelling():
    for verb in verbs():
        result = run_candor(verb, "--help")
        old = "|".join(flag.removeprefix("--") for flag in OLD_SPELLINGS)
        assert result.returncode == 0 and not re.search(rf"--({old})(?![\w-])", result.stdout), verb


def test_every_duration_names_its_unit_and_is_a_number_of_them():
    durations = 0
    for verb, parser in verbs().items():
        for flag, action in shown_flags(parser).items():
            if flag.endswith(UNITS):
                durations += 1
                assert action.type is float, (verb, flag)
            elif action.type in (int, float):  # a number of seconds must say so in its name
                assert not re.search(r"\b(milli|micro)?seconds\b", action.help or ""), (verb, flag, action.help)
    assert durations >= 20


@pytest.mark.parametrize("verb, old", [("serve", flag) for flag in OLD_DURATIONS[:8]] + [
    ("health", "--timeout"), *[("simulate", flag) for flag in OLD_DURATIONS[9:]]])
def test_an_old_duration_spelling_still_works_and_says_what_to_write(capsys, verb, old):
    extra = ["--model", "digits", "rows.npz"] if verb == "simulate" else []
    parsed = build_parser().parse_args([verb, old, "7", *extra])
    new = f"{old}-seconds"
    action = next(a for a in verbs()[verb]._actions if new in a.option_strings)
    assert getattr(parsed, action.dest) == 7.0
    assert f"candor {verb}: note: {old} is now {new}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["predict", "rows.npy"], ["predict", "--input", "rows.npy"]])
def test_the_input_file_is_positional_or_a_flag(argv):
    parsed = build_parser().parse_args([*argv, "--model", "digits"])
    assert parsed.input == "rows.npy" and parsed.model == "digits"


def test_an_old_spelling_still_works_and_says_what_to_write(capsys):
    parsed = build_parser().parse_args(["evaluate", "--name", "digits"])
    assert parsed.name == "digits"
    assert "candor evaluate: note: --name is now --model" in capsys.readouterr().err
    parsed = build_parser().parse_args(["simulate", "--data", "rows.npz", "--model", "digits"])
    assert parsed.input == "rows.npz"


def test_a_bad_version_is_one_line_naming_what_is_expected():
    result = run_candor("calibration", "--model", "digits", "--version", "latest")
    assert result.returncode == 2
    assert "expected a model version, a positive integer such as 1, got 'latest'" in result.stderr
    assert "Traceback" not in result.stderr
