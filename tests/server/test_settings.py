"""Settings from four sources: each value is checked against its field, and an error names where it came from."""

import json

import pytest

from candor.server.core.settings import Settings


def test_later_sources_win_and_text_is_read_as_the_field_type(tmp_path):
    file = tmp_path / "candor.toml"
    file.write_text('max_batch_size = 16\nprovider = "cpu"\nworkers = "auto"\n')
    env = {"CANDOR_MAX_BATCH_SIZE": "32", "CANDOR_ALLOW_SPINNING": "yes", "CANDOR_PSI_WARN": "5e-2",
           "CANDOR_SETTINGS_FILE": str(file)}  # fmt: skip
    s = Settings.load(env=env)
    assert (s.max_batch_size, s.provider, s.workers, s.allow_spinning, s.psi_warn) == (32, "cpu", 0, True, 0.05)
    assert Settings.load(cli={"max_batch_size": 64, "grpc_port": None}, env=env).max_batch_size == 64
    assert Settings.load(env={"CANDOR_ALLOW_SPINNING": "off"}).allow_spinning is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"env": {"CANDOR_GRPC_PORT": "70000"}},
         "environment variable CANDOR_GRPC_PORT: field 'grpc_port' must be less than or equal to 65535, got '70000'"),
        ({"env": {"CANDOR_INSTANCES": "1.5"}},
         "environment variable CANDOR_INSTANCES: field 'instances' must be a valid integer"),
        ({"env": {"CANDOR_REFLECTION": "maybe"}},
         "environment variable CANDOR_REFLECTION: field 'reflection' must be a valid boolean"),
        ({"env": {"CANDOR_IDLE_AFTER_S": "0"}}, "field 'idle_after_s' must be greater than 0, got '0'"),
        ({"cli": {"warmup_rows": 0}}, "command line: field 'warmup_rows' must be greater than or equal to 1, got 0"),
        ({"cli": {"warmup_rows": 0}, "flags": {"warmup_rows": "--warmup-rows"}}, "--warmup-rows: field 'warmup_rows'"),
        ({"cli": {"label_shift_significance": 1.0}}, "field 'label_shift_significance' must be less than 1, got 1.0"),
        ({"cli": {"psi_warn": 0.3}}, "need 0 < psi_warn < psi_drift, got 0.3 and 0.25"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_source_and_field(source, message):
    with pytest.raises(ValueError) as info:
        Settings.load(env=source.get("env", {}), cli=source.get("cli"), flags=source.get("flags"))
    assert message in str(info.value)


def test_a_settings_file_is_typed_and_closed(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('grpc_port = "9001"\nmax_batch_size = true\n')  # text for a port, a boolean for a count
    with pytest.raises(ValueError) as info:
        Settings.load(env={}, file=str(toml))
    assert f"settings file {toml}: field 'grpc_port' must be a valid integer, got '9001'" in str(info.value)
    assert f"settings file {toml}: field 'max_batch_size' must be a valid integer, got True" in str(info.value)
    unknown = tmp_path / "s.json"
    unknown.write_text(json.dumps({"batch": 3}))
    with pytest.raises(ValueError, match=r"settings file .*s.json: unknown field 'batch' \(allowed here: model_repository, "):
        Settings.load(env={}, file=str(unknown))
    unknown.write_text("[1]")
    with pytest.raises(ValueError, match="expected a table of settings"):
        Settings.load(env={}, file=str(unknown))


def test_a_settings_object_made_in_code_is_checked_too():
    with pytest.raises(ValueError, match="invalid settings: field 'max_queue_rows' must be greater than or equal to 1"):
        Settings(max_queue_rows=0).check()
    assert Settings(max_queue_delay_ms=2).check().max_queue_delay_ms == 2


def test_benchmark_skip_takes_log_drift_and_native_only():
    settings = Settings(benchmark_skip="log,native").check()
    assert settings.skips("native") and settings.skips("log") and not settings.skips("drift")
    with pytest.raises(ValueError, match="benchmark_skip takes log, drift and/or native, separated by a comma, got 'sets'"):
        Settings(benchmark_skip="sets").check()
