"""config.json and docker-credential-* helpers, as the docker CLI uses them."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from registry.client.credentials import DOCKER_HUB_CONFIG_KEY, Credential, DockerConfig

HELPER = """#!{python}
# A docker-credential helper speaking the real protocol, storing into a JSON file.
import json, sys
path = {store!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
payload = sys.stdin.read()
if action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
elif action == "get":
    if payload.strip() not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = data[payload.strip()]
    print(json.dumps({{"ServerURL": payload.strip(), "Username": user, "Secret": secret}}))
elif action == "erase":
    if data.pop(payload.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
json.dump(data, open(path, "w"))
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    store = tmp_path / "helper-store.json"
    script = bindir / "docker-credential-berthtest"
    script.write_text(HELPER.format(python=sys.executable, store=str(store)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return store


def test_auths_roundtrip_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"psFormat": "table", "auths": {"https://old.example/v1/": {"auth": base64.b64encode(b"o:p").decode()}}}))
    config = DockerConfig(path)
    config.store("reg.example:5000", Credential("alice", "pw"))
    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "table"
    assert base64.b64decode(doc["auths"]["reg.example:5000"]["auth"]) == b"alice:pw"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.get("reg.example:5000") == Credential("alice", "pw")
    assert config.get("old.example") == Credential("o", "p")  # URL-style keys still match
    assert config.get("other.example").empty
    assert config.erase("reg.example:5000") and not config.erase("reg.example:5000")
    assert config.get("reg.example:5000").empty


def test_identity_token_and_docker_hub_key(tmp_path: Path) -> None:
    config = DockerConfig(tmp_path / "config.json")
    config.store("docker.io", Credential("bob", "", "REFRESH"))
    entry = json.loads((tmp_path / "config.json").read_text())["auths"][DOCKER_HUB_CONFIG_KEY]
    assert entry["identitytoken"] == "REFRESH"
    assert config.get("registry-1.docker.io") == Credential("bob", "", "REFRESH")


def test_creds_store_helper(tmp_path: Path, helper: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "berthtest"}))
    config = DockerConfig(path)
    config.store("reg.example", Credential("carol", "pw"))
    assert json.loads(path.read_text())["auths"] == {"reg.example": {}}  # docker's marker entry
    assert json.loads(helper.read_text()) == {"reg.example": ["carol", "pw"]}
    assert config.get("reg.example") == Credential("carol", "pw")
    config.store("tok.example", Credential("", "", "IDTOKEN"))
    assert config.get("tok.example") == Credential(identity_token="IDTOKEN")  # "<token>" user
    assert config.erase("reg.example")
    assert config.get("reg.example").empty


def test_cred_helpers_per_registry(tmp_path: Path, helper: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"helped.example": "berthtest"},
                                "auths": {"plain.example": {"auth": base64.b64encode(b"x:y").decode()}}}))
    config = DockerConfig(path)
    config.store("helped.example", Credential("dave", "pw"))
    assert json.loads(helper.read_text()) == {"helped.example": ["dave", "pw"]}
    assert config.get("plain.example") == Credential("x", "y")
    assert config.get("helped.example") == Credential("dave", "pw")


def test_missing_helper_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "does-not-exist"}))
    with pytest.raises(Exception, match="docker-credential-does-not-exist is not installed"):
        DockerConfig(path).get("reg.example")
