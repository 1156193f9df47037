"""quorumkeep.node.config: node.toml parsing, validation and the hand-written TOML writer."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from quorumkeep.daemon.config import dump_toml, write_atomically
from quorumkeep.net.address import parse_host_port
from quorumkeep.node.config import (
    ConfigError,
    NodeConfig,
    load_config,
    write_config,
)

GOOD = """
account = "alice-node"
data_dir = "."
ledger_url = "http://127.0.0.1:8500/"
p2p_listen = "127.0.0.1:7001"
web_listen = "127.0.0.1:8001"

[storage_key]
source = "passphrase"
passphrase_file = "secret/pass.txt"
"""


def test_load_resolves_paths_and_derives_urls(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text(GOOD)
    config = load_config(tmp_path / "node.toml")
    assert config.data_dir == tmp_path.resolve()
    assert config.storage_key.passphrase_file == (tmp_path / "secret/pass.txt").resolve()
    assert config.ledger_url == "http://127.0.0.1:8500"
    assert config.p2p_url == "127.0.0.1:7001"
    assert config.web_url == "https://127.0.0.1:8001"
    assert config.p2p_listen_address == ("127.0.0.1", 7001)


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    config = NodeConfig.model_validate(
        {
            "account": 'we"ird\\name',
            "data_dir": tmp_path,
            "ledger_url": "https://ledger.example:9000",
            "p2p_listen": "0.0.0.0:7001",
            "p2p_advertise": "[::1]:7001",
            "web_listen": "127.0.0.1:8001",
            "storage_key": {"passphrase_env": "QK_PASS"},
        }
    )
    write_config(config, tmp_path / "node.toml")
    text = (tmp_path / "node.toml").read_text()
    assert 'data_dir = "."' in text  # the directory stays movable
    assert load_config(tmp_path / "node.toml") == config
    assert config.p2p_url == "[::1]:7001"
    assert not (tmp_path / "node.toml.tmp").exists()


def test_dump_toml_escapes_and_reads_back() -> None:
    document = {
        "s": 'quote " backslash \\ tab \t newline \n ctrl \x01 é',
        "n": -3,
        "f": 1.5,
        "b": True,
        "l": [1, "two"],
        "skip": None,
        "weird key": 1,
        "t": {"x": "y", "z": None},
    }
    parsed = tomllib.loads(dump_toml(document))
    assert parsed == {
        "s": document["s"],
        "n": -3,
        "f": 1.5,
        "b": True,
        "l": [1, "two"],
        "weird key": 1,
        "t": {"x": "y"},
    }
    with pytest.raises(ValueError):
        dump_toml({"x": float("inf")})
    with pytest.raises(ValueError):
        dump_toml({"t": {"u": {"v": 1}}})
    with pytest.raises(ValueError):
        dump_toml({"x": object()})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"account": ""}, "account"),
        ({"account": "has space"}, "account"),
        ({"ledger_url": "ftp://x"}, "ledger_url"),
        ({"ledger_url": "http://[::1"}, "not a ledger URL: 'http://[::1'"),
        ({"ledger_url": "http://a:1, ,http://"}, "not a ledger URL: 'http:'"),
        ({"ledger_url": " , "}, "no ledger URL given"),
        ({"p2p_listen": "127.0.0.1"}, "p2p_listen"),
        ({"p2p_listen": "127.0.0.1:0"}, "port must be 1..65535"),
        ({"web_listen": "::1:80"}, "IPv6"),
        ({"web_listen": "[nothex]:80"}, "IPv6"),
        ({"p2p_listen": "0.0.0.0:7001"}, "p2p_advertise"),
        ({"unexpected": 1}, "unexpected"),
        ({"storage_key": {"source": "passphrase"}}, "exactly one"),
        ({"storage_key": {"passphrase_env": "A", "passphrase_file": "f"}}, "exactly one"),
        ({"storage_key": {"source": "tee"}}, "storage_key"),
    ],
)
def test_invalid_configs_are_one_line_typed_errors(
    tmp_path: Path, change: dict[str, object], fragment: str
) -> None:
    document = tomllib.loads(GOOD)
    document.update(change)
    (tmp_path / "node.toml").write_text(dump_toml(document))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "node.toml")
    assert info.value.code == "invalid_config"
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "none.toml")
    assert info.value.code == "config_not_found"
    (tmp_path / "bad.toml").write_text("account = ")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bad.toml")
    assert info.value.code == "config_syntax"


def test_parse_host_port() -> None:
    assert parse_host_port("localhost:1") == ("localhost", 1)
    assert parse_host_port("[::1]:65535") == ("::1", 65535)
    for bad in ("", ":80", "host:", "host:99999", "host:-1", "[::1]80", "a b:1"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


def test_files_are_written_whole_and_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "node.toml"
    target.write_text("old")
    target.chmod(0o644)
    write_atomically(target, "é new\n")
    assert target.read_bytes() == "é new\n".encode()
    assert target.stat().st_mode & 0o777 == 0o600
    stale = tmp_path / "node.toml.tmp"  # left by a crash, readable by others
    stale.write_text("stale")
    stale.chmod(0o644)
    write_atomically(target, b"\x00\xff")
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.toml"]  # no temporary left
