"""Configuration: defaults, TOML files, environment overrides, validation messages, secrecy."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from agent._config import (
    DEFAULT_API_URL,
    ENV_CONFIG,
    RULES,
    SECTIONS,
    AgentConfig,
    ClientConfig,
    CollectorConfig,
    ConfigError,
    DaemonConfig,
    OverflowPolicy,
    PipelineConfig,
    RetryConfig,
    SpoolConfig,
    default_data_dir,
    default_socket_path,
    default_spool_dir,
    env_var_name,
    load_config,
    parse_address,
    parse_size,
    validate,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
KEY = "sk-DISTINCTIVE-7f3a9c41e0"  # must never show up in a repr or an error message


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    """With no file and no environment, every value is the documented default."""
    cfg = load_config(env={})
    assert cfg == AgentConfig()
    assert cfg.client.api_key is None
    assert cfg.client.url == DEFAULT_API_URL == "https://cloud.getliteral.ai"
    assert (cfg.client.timeout, cfg.client.connect_timeout) == (10.0, 5.0)
    assert cfg.client.max_connections == 10
    assert cfg.pipeline.max_queue_events == 100_000
    assert cfg.pipeline.max_queue_bytes == 64 * 2**20
    assert cfg.pipeline.overflow is OverflowPolicy.SPILL
    assert cfg.pipeline.overflow.value == "spill"
    assert (cfg.pipeline.batch_size, cfg.pipeline.batch_bytes) == (500, 4 * 2**20)
    assert (cfg.pipeline.flush_interval, cfg.pipeline.max_in_flight) == (0.2, 2)
    assert cfg.pipeline.block_timeout == 0.05
    assert cfg.pipeline.shutdown_timeout == 5.0
    assert cfg.retry == RetryConfig(
        initial_backoff=0.1,
        max_backoff=5.0,
        multiplier=2.0,
        jitter=0.1,
        deadline=30.0,
        max_attempts=10,
    )
    assert cfg.spool.enabled is True
    assert cfg.spool.directory is None
    assert (cfg.spool.max_bytes, cfg.spool.segment_bytes) == (2**30, 16 * 2**20)
    assert cfg.spool.fsync_interval == 0.005
    assert cfg.spool.full_policy == "drop_oldest"
    assert cfg.spool.dead_letter is None
    assert cfg.daemon.socket is None
    assert cfg.daemon.socket_mode == 0o660
    assert cfg.daemon.tcp is None
    assert cfg.daemon.durability == "memory"
    assert cfg.daemon.max_frame_bytes == 2**20
    assert (cfg.daemon.max_connections, cfg.daemon.idle_timeout) == (256, 60.0)
    assert cfg.daemon.drain_timeout == 5.0
    assert (cfg.collector.host, cfg.collector.port) == ("127.0.0.1", 8799)
    assert cfg.collector.api_keys == ()
    assert cfg.collector.max_body_bytes == 16 * 2**20
    assert cfg.collector.data_dir is None
    assert cfg.collector.database_url is None
    assert (cfg.logging.format, cfg.logging.level) == ("auto", "info")


def test_structs_are_frozen_and_strict() -> None:
    """Config Structs cannot be mutated, and decoding rejects unknown fields."""
    cfg = AgentConfig()
    with pytest.raises(AttributeError):
        cfg.pipeline.batch_size = 1
    with pytest.raises(msgspec.ValidationError, match="unknown"):
        msgspec.convert({"batchsize": 1}, PipelineConfig)


def test_default_directories(tmp_path: Path) -> None:
    """XDG variables decide the default paths; relative XDG values are ignored."""
    home = str(tmp_path)
    env = {"HOME": home}
    assert default_spool_dir(env) == f"{home}/.local/state/literal-agent/spool"
    assert default_data_dir(env) == f"{home}/.local/share/literal-agent"
    assert default_spool_dir({**env, "XDG_STATE_HOME": "/srv/state"}) == (
        "/srv/state/literal-agent/spool"
    )
    assert default_data_dir({**env, "XDG_DATA_HOME": "/srv/data"}) == "/srv/data/literal-agent"
    assert default_data_dir({**env, "XDG_DATA_HOME": "relative"}) == (
        f"{home}/.local/share/literal-agent"
    )

    assert default_socket_path({"XDG_RUNTIME_DIR": "/run/user/1000"}) == (
        "/run/user/1000/literal-agent/agent.sock"
    )
    assert default_socket_path({"RUNTIME_DIRECTORY": "/run/literal-agent"}) == (
        "/run/literal-agent/agent.sock"
    )
    assert default_socket_path({}) == f"/tmp/literal-agent-{os.getuid()}/agent.sock"

    spool = SpoolConfig(directory="/var/lib/la/spool")
    assert spool.resolved_directory == "/var/lib/la/spool"
    assert spool.resolved_dead_letter == "/var/lib/la/dead-letter.jsonl"
    assert SpoolConfig(dead_letter="/x/dl.jsonl").resolved_dead_letter == "/x/dl.jsonl"
    assert DaemonConfig(socket="/x.sock").resolved_socket == "/x.sock"
    assert CollectorConfig(data_dir="/d").resolved_data_dir == "/d"


# --------------------------------------------------------------------------- files


def test_file_loading(tmp_path: Path) -> None:
    """Values from a TOML file land in the right Struct with the right types."""
    path = write(
        tmp_path,
        """
[client]
url = "http://127.0.0.1:8799"
environment = "staging"
timeout = 3

[pipeline]
batch_size = 100
max_queue_bytes = "8MiB"
overflow = "drop_oldest"

[spool]
directory = "/tmp/spool"
fsync_interval = "none"
max_bytes = 50_000_000

[daemon]
socket_mode = 0o600
tcp = "[::1]:8798"
durability = "DISK"

[collector]
api_keys = ["k1", "k2"]
port = 0

[logging]
level = "debug"
""",
    )
    cfg = load_config(path, env={})
    assert cfg.client.url == "http://127.0.0.1:8799"
    assert cfg.client.environment == "staging"
    assert cfg.client.timeout == 3.0
    assert isinstance(cfg.client.timeout, float)
    assert cfg.pipeline.batch_size == 100
    assert cfg.pipeline.max_queue_bytes == 8 * 2**20
    assert cfg.pipeline.overflow is OverflowPolicy.DROP_OLDEST
    assert cfg.spool.directory == "/tmp/spool"
    assert cfg.spool.fsync_interval is None
    assert cfg.spool.max_bytes == 50_000_000
    assert cfg.daemon.socket_mode == 0o600
    assert cfg.daemon.tcp == "[::1]:8798"
    assert cfg.daemon.durability == "disk"
    assert cfg.collector.api_keys == ("k1", "k2")
    assert cfg.collector.port == 0
    assert cfg.logging.level == "debug"
    # untouched keys keep their defaults
    assert cfg.retry == RetryConfig()


def test_config_file_from_environment(tmp_path: Path) -> None:
    """Without a path argument, LITERAL_AGENT_CONFIG names the file."""
    path = write(tmp_path, "[pipeline]\nbatch_size = 7\n")
    assert load_config(env={ENV_CONFIG: str(path)}).pipeline.batch_size == 7
    missing = tmp_path / "missing.toml"
    message = error_of(env={ENV_CONFIG: str(missing)})
    assert str(missing) in message
    assert ENV_CONFIG in message
    assert "No such file" in message


@pytest.mark.parametrize("example", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_example_files_validate(example: Path) -> None:
    """Every documented example in config/ loads and validates."""
    cfg = load_config(example, env={})
    assert isinstance(cfg, AgentConfig)


def test_example_agent_toml_documents_every_key_with_its_default() -> None:
    """config/agent.toml names every key of every section, and its values are the defaults."""
    text = (CONFIG_DIR / "agent.toml").read_text()
    assert load_config(CONFIG_DIR / "agent.toml", env={}) == AgentConfig()
    for section, rules in RULES.items():
        assert f"[{section}]" in text
        for key in rules:
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"[{section}] {key}"
    assert list(tomllib.loads(text)) == list(SECTIONS)


def test_example_daemon_disk() -> None:
    """config/daemon-disk.toml really selects disk durability and a spool directory."""
    cfg = load_config(CONFIG_DIR / "daemon-disk.toml", env={})
    assert cfg.daemon.durability == "disk"
    assert cfg.spool.enabled
    assert cfg.spool.directory


# --------------------------------------------------------------------------- environment


def test_environment_beats_file(tmp_path: Path) -> None:
    """SDK variables and LITERAL_AGENT_* override the file; LITERAL_AGENT_CLIENT_* wins."""
    path = write(
        tmp_path,
        '[client]\nurl = "http://file:1"\nenvironment = "file"\n[pipeline]\nbatch_size = 5\n',
    )
    env = {
        "LITERAL_API_KEY": KEY,
        "LITERAL_API_URL": "http://env:2",
        "LITERAL_ENV": "prod",
        "LITERAL_AGENT_PIPELINE_BATCH_SIZE": "100",
    }
    cfg = load_config(path, env=env)
    assert cfg.client.api_key == KEY
    assert cfg.client.url == "http://env:2"
    assert cfg.client.environment == "prod"
    assert cfg.pipeline.batch_size == 100

    cfg = load_config(path, env={**env, "LITERAL_AGENT_CLIENT_URL": "http://generic:3/"})
    assert cfg.client.url == "http://generic:3"  # trailing slash stripped
    # an empty SDK variable counts as unset
    assert load_config(path, env={"LITERAL_API_URL": ""}).client.url == "http://file:1"


@pytest.mark.parametrize(
    ("var", "value", "section", "key", "expected"),
    [
        ("LITERAL_AGENT_PIPELINE_BATCH_SIZE", "100", "pipeline", "batch_size", 100),
        ("LITERAL_AGENT_PIPELINE_MAX_QUEUE_EVENTS", "1_000", "pipeline", "max_queue_events", 1000),
        ("LITERAL_AGENT_PIPELINE_FLUSH_INTERVAL", "0.5", "pipeline", "flush_interval", 0.5),
        ("LITERAL_AGENT_PIPELINE_BATCH_BYTES", "2MiB", "pipeline", "batch_bytes", 2 * 2**20),
        (
            "LITERAL_AGENT_PIPELINE_OVERFLOW",
            "Drop_Newest",
            "pipeline",
            "overflow",
            OverflowPolicy.DROP_NEWEST,
        ),
        ("LITERAL_AGENT_SPOOL_ENABLED", "false", "spool", "enabled", False),
        ("LITERAL_AGENT_SPOOL_ENABLED", "1", "spool", "enabled", True),
        ("LITERAL_AGENT_SPOOL_FSYNC_INTERVAL", "none", "spool", "fsync_interval", None),
        ("LITERAL_AGENT_SPOOL_FSYNC_INTERVAL", "0", "spool", "fsync_interval", 0.0),
        ("LITERAL_AGENT_SPOOL_DIRECTORY", "", "spool", "directory", None),
        ("LITERAL_AGENT_SPOOL_DIRECTORY", "/srv/spool", "spool", "directory", "/srv/spool"),
        ("LITERAL_AGENT_DAEMON_SOCKET_MODE", "0600", "daemon", "socket_mode", 0o600),
        ("LITERAL_AGENT_DAEMON_SOCKET_MODE", "0o640", "daemon", "socket_mode", 0o640),
        ("LITERAL_AGENT_DAEMON_TCP", "127.0.0.1:8798", "daemon", "tcp", "127.0.0.1:8798"),
        ("LITERAL_AGENT_COLLECTOR_API_KEYS", "a, b,,c", "collector", "api_keys", ("a", "b", "c")),
        ("LITERAL_AGENT_COLLECTOR_PORT", "0", "collector", "port", 0),
        ("LITERAL_AGENT_COLLECTOR_INGEST_JOURNAL", "false", "collector", "ingest_journal", False),
        ("LITERAL_AGENT_RETRY_MAX_ATTEMPTS", "3", "retry", "max_attempts", 3),
        ("LITERAL_AGENT_LOGGING_FORMAT", "JSON", "logging", "format", "json"),
        ("LITERAL_AGENT_CLIENT_API_KEY", KEY, "client", "api_key", KEY),
    ],
)
def test_generic_environment_override(
    var: str, value: str, section: str, key: str, expected: Any
) -> None:
    """LITERAL_AGENT_<SECTION>_<KEY> is parsed to the field's type."""
    assert env_var_name(section, key) == var
    cfg = load_config(env={var: value})
    got = getattr(getattr(cfg, section), key)
    assert got == expected
    assert type(got) is type(expected)


def test_environment_unknown_names() -> None:
    """Unknown sections are not ours (ignored); an unknown key of a known section is an error."""
    assert load_config(env={"LITERAL_AGENT_SOMETHING_ELSE": "x"}) == AgentConfig()
    message = error_of(env={"LITERAL_AGENT_PIPELINE_BATCHSIZE": "10"})
    assert message.startswith("environment variable LITERAL_AGENT_PIPELINE_BATCHSIZE: ")
    assert 'unknown key "batchsize"' in message
    assert "did you mean LITERAL_AGENT_PIPELINE_BATCH_SIZE?" in message
    assert "valid keys: max_queue_events, " in message


def test_environment_bad_value_names_the_variable() -> None:
    """A bad environment value names the variable, the key and what is expected."""
    message = error_of(env={"LITERAL_AGENT_PIPELINE_BATCH_SIZE": "ten"})
    assert message == (
        "environment variable LITERAL_AGENT_PIPELINE_BATCH_SIZE: "
        '[pipeline] batch_size: expected an integer >= 1, got "ten"'
    )
    message = error_of(env={"LITERAL_AGENT_SPOOL_ENABLED": "maybe"})
    assert "[spool] enabled: expected true or false" in message
    message = error_of(env={"LITERAL_API_URL": "cloud.getliteral.ai"})
    assert message.startswith("environment variable LITERAL_API_URL: [client] url: expected an")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cloud.getliteral.ai", True),
        ("http://127.0.0.1:8799", True),
        ("http://[::1]:8799/prefix", True),
        ("http://localhost:99999", False),
        ("http://", False),
        ("cloud.getliteral.ai", False),
        ("https://cloud getliteral.ai", False),
    ],
)
def test_url_validation(url: str, ok: bool) -> None:
    """[client] url must be an http(s) URL with a host and a valid port."""
    if ok:
        assert load_config(env={"LITERAL_API_URL": url}).client.url == url
    else:
        assert "[client] url: expected an http" in error_of(env={"LITERAL_API_URL": url})


def test_client_from_env() -> None:
    """ClientConfig.from_env reads the SDK variables; explicit arguments beat them."""
    env = {"LITERAL_API_KEY": KEY, "LITERAL_API_URL": "http://127.0.0.1:8799", ENV_CONFIG: "/no"}
    client = ClientConfig.from_env(env=env)
    assert client.api_key == KEY
    assert client.url == "http://127.0.0.1:8799"
    client = ClientConfig.from_env(api_key="other-key", environment="dev", env=env)
    assert (client.api_key, client.environment) == ("other-key", "dev")
    with pytest.raises(ConfigError, match=r"^argument: \[client\] url: expected an http"):
        ClientConfig.from_env(url="nope", env={})


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        pytest.param(
            '[pipeline]\nbatch_size = "ten"\n',
            '[pipeline] batch_size: expected an integer >= 1, got "ten"',
            id="wrong-type",
        ),
        pytest.param(
            "[pipeline]\nbatch_size = 0\n",
            "[pipeline] batch_size: expected an integer >= 1, got 0",
            id="zero-count",
        ),
        pytest.param(
            "[pipeline]\nbatch_size = 10.5\n",
            "[pipeline] batch_size: expected an integer >= 1, got 10.5",
            id="float-for-int",
        ),
        pytest.param(
            '[pipeline]\noverflow = "explode"\n',
            '[pipeline] overflow: expected one of "spill", "drop_newest", "drop_oldest", "block",'
            ' got "explode"',
            id="bad-enum",
        ),
        pytest.param(
            "[pipeline]\nmax_queue_bytes = -5\n",
            "[pipeline] max_queue_bytes: expected a size in bytes >= 1",
            id="negative-size",
        ),
        pytest.param(
            '[spool]\nmax_bytes = "64 parsecs"\n',
            '[spool] max_bytes: expected a size in bytes >= 1 (an integer or a string like "64MiB")'
            ', got "64 parsecs"',
            id="bad-size-string",
        ),
        pytest.param(
            "[client]\ntimeout = 0\n",
            "[client] timeout: expected a number > 0, got 0",
            id="zero-timeout",
        ),
        pytest.param(
            '[client]\nurl = "ftp://example.com"\n',
            "[client] url: expected an http:// or https:// URL",
            id="bad-url",
        ),
        pytest.param(
            "[collector]\nport = 70000\n",
            "[collector] port: expected an integer between 0 and 65535, got 70000",
            id="port-range",
        ),
        pytest.param(
            '[daemon]\ntcp = "localhost"\n',
            '[daemon] tcp: expected a "host:port" address (like "127.0.0.1:8798"), got "localhost"',
            id="tcp-no-port",
        ),
        pytest.param(
            '[daemon]\ntcp = "127.0.0.1:99999"\n',
            '[daemon] tcp: expected a "host:port" address',
            id="tcp-port-range",
        ),
        pytest.param(
            "[daemon]\nsocket_mode = 660\n",
            "[daemon] socket_mode: expected a file mode between 0o000 and 0o777"
            ' (like 0o660, or the string "0660"), got 660 (= 0o1224)',
            id="decimal-socket-mode",
        ),
        pytest.param(
            '[daemon]\nsocket_mode = "rw"\n',
            "[daemon] socket_mode: expected a file mode between 0o000 and 0o777 (like 0o660, or"
            ' the string "0660"), got "rw"',
            id="socket-mode-not-int",
        ),
        pytest.param(
            '[daemon]\ndurability = "tape"\n',
            '[daemon] durability: expected one of "memory", "disk", got "tape"',
            id="bad-durability",
        ),
        pytest.param(
            '[spool]\nenabled = "yes"\n',
            '[spool] enabled: expected true or false, got "yes"',
            id="bool-as-string",
        ),
        pytest.param(
            '[logging]\nlevel = "loud"\n',
            '[logging] level: expected one of "debug", "info", "warning", "error", "critical",'
            ' got "loud"',
            id="bad-level",
        ),
        pytest.param(
            '[spool]\nmax_bytes = "1MiB"\nsegment_bytes = "2MiB"\n',
            "[spool] segment_bytes: expected a size <= [spool] max_bytes (1048576), got 2097152",
            id="segment-larger-than-spool",
        ),
        pytest.param(
            "[retry]\ninitial_backoff = 2.0\nmax_backoff = 1.0\n",
            "[retry] initial_backoff: expected a number <= [retry] max_backoff (1.0), got 2.0",
            id="backoff-order",
        ),
        pytest.param(
            '[spool]\nmax_bytes = "1MiB"\n',
            "[spool] max_bytes: expected a size >= [spool] segment_bytes (16777216), got 1048576",
            id="blame-the-key-that-was-set",
        ),
        pytest.param(
            "[collector]\ndatabase_pool_size = 0\n",
            "[collector] database_pool_size: expected an integer between 1 and 1000, got 0",
            id="pool-size-zero",
        ),
        pytest.param(
            '[collector]\ningest_journal = "off"\n',
            '[collector] ingest_journal: expected true or false, got "off"',
            id="journal-switch-as-string",
        ),
        pytest.param(
            "[pipeline]\nbatchsize = 10\n",
            '[pipeline] unknown key "batchsize"; did you mean "batch_size"? valid keys: '
            "max_queue_events, max_queue_bytes, overflow, block_timeout, spill_wait, batch_size,",
            id="unknown-key",
        ),
        pytest.param(
            "[pipline]\nbatch_size = 10\n",
            "unknown section [pipline]; did you mean [pipeline]? valid sections: [client],",
            id="unknown-section",
        ),
        pytest.param(
            "pipeline = 3\n",
            "[pipeline]: expected a table, got an integer",
            id="section-not-a-table",
        ),
        pytest.param(
            "[[pipeline]]\nbatch_size = 1\n",
            "[pipeline]: expected a table, got a list",
            id="array-of-tables",
        ),
        pytest.param(
            "batch_size = 10\n",
            'unknown top-level key "batch_size"; keys belong in a section: did you mean'
            " [pipeline] batch_size?",
            id="top-level-key",
        ),
    ],
)
def test_bad_file_values(tmp_path: Path, toml: str, expected: str) -> None:
    """Each bad input names the file, the section and key, and what is expected."""
    path = write(tmp_path, toml)
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_every_problem_is_reported(tmp_path: Path) -> None:
    """All problems of a file are listed, one per line, not just the first."""
    path = write(tmp_path, '[pipeline]\nbatch_size = "ten"\nflush_interval = -1\n[daemon]\nx = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert len(info.value.problems) == 3
    assert str(info.value).count("\n") == 2
    assert all(line.startswith(f"{path}: ") for line in str(info.value).splitlines())


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ("[pipeline]\nbatch_size = 1\nflush_interval = \n", "line 3, column 18"),
        ('[client]\nurl = "http://x\n', "line 2"),
        ("[pipeline]\nbatch_size = 1\n[pipeline]\n", "line 3"),
        ("[pipeline\n", "line 1"),
    ],
)
def test_toml_syntax_error_names_file_and_line(tmp_path: Path, toml: str, line: str) -> None:
    """A TOML syntax error says which file and which line."""
    path = write(tmp_path, toml)
    message = error_of(path)
    assert message.startswith(f"{path}: {line}")
    assert "invalid TOML" in message


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported with its line."""
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[client]\nurl = "\xff"\n')
    assert error_of(path) == f"{path}: line 2: invalid TOML: not UTF-8 text"


def test_validate_hand_built_structs() -> None:
    """validate() applies the same rules to Structs built in code."""
    good = AgentConfig(pipeline=PipelineConfig(batch_size=10))
    assert validate(good) is good
    bad = AgentConfig(
        pipeline=PipelineConfig(batch_size=-1, overflow="nope"),  # type: ignore[arg-type]
        daemon=DaemonConfig(tcp="no-port"),
    )
    with pytest.raises(ConfigError) as info:
        validate(bad, source="test")
    assert info.value.problems == (
        "test: [pipeline] overflow: expected one of "
        '"spill", "drop_newest", "drop_oldest", "block", got "nope"',
        "test: [pipeline] batch_size: expected an integer >= 1, got -1",
        'test: [daemon] tcp: expected a "host:port" address (like "127.0.0.1:8798"), got "no-port"',
    )


# --------------------------------------------------------------------------- secrecy


def test_api_key_hidden_from_repr_but_usable() -> None:
    """The key is a plain str for httpx, but never appears in repr()/str() of a config."""
    cfg = load_config(env={"LITERAL_API_KEY": KEY, "LITERAL_AGENT_COLLECTOR_API_KEYS": KEY})
    assert cfg.client.api_key == KEY
    assert type(cfg.client.api_key) is str
    assert httpx.Headers({"x-api-key": cfg.client.api_key})["x-api-key"] == KEY
    assert cfg.collector.api_keys == (KEY,)
    for text in (repr(cfg), str(cfg), repr(cfg.client), f"{cfg.collector}", repr([cfg])):
        assert KEY not in text
    assert "api_key=***" in repr(cfg.client)
    assert "api_keys=(***,)" in repr(cfg.collector)
    assert KEY not in repr(cfg.client.__rich_repr__())
    assert KEY not in repr(cfg.collector.__rich_repr__())
    # unset stays visibly unset
    assert "api_key=None" in repr(ClientConfig())
    # the config still encodes (e.g. for a status command); that is explicit, not a repr
    assert msgspec.convert(msgspec.to_builtins(cfg), AgentConfig) == cfg


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        pytest.param(f"[client]\napi_key = {KEY!r}\nurl = 'nope'\n", {}, id="bad-url-next-to-key"),
        pytest.param(f'[client]\napi_key = "{KEY}\n', {}, id="syntax-error-in-key-line"),
        pytest.param(f"[pipeline]\napi_key = {KEY!r}\n", {}, id="key-in-wrong-section"),
        pytest.param(f"api_key = {KEY!r}\n", {}, id="key-at-top-level"),
        pytest.param(f"[client]\napi_keys = {KEY!r}\n", {}, id="misspelt-key-name"),
        pytest.param("[client]\napi_key = 12345\n", {}, id="key-wrong-type"),
        pytest.param(f"[collector]\napi_keys = [{KEY!r}, 3]\n", {}, id="collector-keys-mixed"),
        pytest.param(f"[collector]\napi_keys = {KEY!r}\n", {}, id="collector-keys-not-list"),
        pytest.param("[collector]\napi_keys = ['']\n", {}, id="collector-empty-key"),
        pytest.param(
            "[pipeline]\nbatch_size = 'x'\n",
            {"LITERAL_API_KEY": KEY, "LITERAL_AGENT_CLIENT_TIMEOUT": KEY},
            id="key-as-another-value",
        ),
        pytest.param("", {"LITERAL_AGENT_CLIENT_APIKEY": KEY}, id="env-misspelt"),
        pytest.param("", {"LITERAL_AGENT_CLIENT_API_KEY": KEY, "LITERAL_API_URL": "x"}, id="env"),
    ],
)
def test_api_key_never_in_error_messages(tmp_path: Path, toml: str, env: dict[str, str]) -> None:
    """Whatever is wrong around it, the key's value is not part of the error message."""
    path = write(tmp_path, toml)
    message = error_of(path, env)
    assert KEY not in message
    assert KEY[:12] not in message
    assert "12345" not in message


def test_secret_type_errors_say_what_was_given(tmp_path: Path) -> None:
    """A wrongly typed key is described by its type only."""
    message = error_of(write(tmp_path, "[client]\napi_key = 12345\n"))
    assert message.endswith(
        "[client] api_key: expected a non-empty string, got an integer (value hidden)"
    )


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("64MiB", 64 * 2**20),
        ("64mib", 64 * 2**20),
        ("64 MiB", 64 * 2**20),
        ("1GB", 10**9),
        ("1GiB", 2**30),
        ("512k", 512 * 1024),
        ("512KB", 512_000),
        ("1.5GiB", 3 * 2**29),
        ("2T", 2 * 2**40),
        ("100B", 100),
        ("1_000", 1000),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    """Sizes accept binary and decimal units, case-insensitively."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "64 parsecs", "-1MiB", "1..5GB", "0x10"])
def test_parse_size_rejects(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_parse_address() -> None:
    """host:port, with IPv6 in brackets; port in 0-65535."""
    assert parse_address("127.0.0.1:8798") == ("127.0.0.1", 8798)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("localhost:80") == ("localhost", 80)
    for bad in ("localhost", ":80", "::1:80", "host:99999", "host:port", "[nope]:1"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_rules_cover_every_field() -> None:
    """Every field of every section has a rule, so nothing escapes validation."""
    for section, cls in SECTIONS.items():
        assert set(RULES[section]) == set(cls.__struct_fields__)
    assert set(SECTIONS) == set(AgentConfig.__struct_fields__)


def test_pipeline_spill_wait_reaches_the_pipeline_settings(tmp_path: Path) -> None:
    """[pipeline] spill_wait (file, then environment) is what the pipeline's queue waits."""
    from agent.pipeline._settings import Settings

    path = write(tmp_path, "[pipeline]\nspill_wait = 2.5\n")
    assert Settings.from_config(load_config(path, env={})).spill_wait == 2.5
    env = {"LITERAL_AGENT_PIPELINE_SPILL_WAIT": "0.25"}
    assert Settings.from_config(load_config(path, env=env)).spill_wait == 0.25
    assert "[pipeline] spill_wait: expected a number > 0" in error_of(
        write(tmp_path, "[pipeline]\nspill_wait = 0\n", name="zero.toml")
    )
