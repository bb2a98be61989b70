"""``berth webhooks status`` and ``berth webhooks replay`` on a real outbox directory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from registry.webhooks.cli import main, parse_time, replay_main, status_main
from registry.webhooks.outbox import EndpointState, Outbox, read_records
from tests.servers import REPO_ROOT


def write_config(tmp_path: Path, **extra: object) -> Path:
    doc = {"version": "0.1", "notifications": {
        "outbox": str(tmp_path / "ob"),
        "endpoints": [
            {"name": "ci", "url": "http://127.0.0.1:9/hook", "repositories": ["lib/*"]},
            {"name": "audit", "url": "http://127.0.0.1:9/audit"},
            {"name": "off", "url": "http://127.0.0.1:9/off", "disabled": True},
        ], **extra}}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def ev(n: int, repo: str = "lib/app") -> dict[str, object]:
    return {"id": f"id-{n}", "action": "push", "target": {"repository": repo, "tag": f"t{n}"}}


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    """An outbox where ci delivered 2 of 4 events and dead-lettered one; audit delivered none."""
    box = Outbox(tmp_path / "ob")
    old = box.append([ev(1), ev(2)], queued=1_000_000.0)
    box.append([ev(3), ev(4, repo="other/x")], queued=2_000_000.0)
    box.save_state("ci", EndpointState(cursor=2, delivered=1, failed=7, deadlettered=1,
                                       last_error="HTTP 500: boom", last_error_at=1_500_000.0,
                                       last_success_at=1_400_000.0))
    box.save_state("audit", EndpointState(cursor=0))
    box.dead_letter("ci", old[1], "HTTP 500: boom", attempts=7)
    box.close()
    return Outbox(tmp_path / "ob", owner=False)


def run(fn: object, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = fn(list(argv), out)  # type: ignore[operator]
    return int(code), out.getvalue()


def test_status_text_and_json(tmp_path: Path, outbox: Outbox) -> None:
    config = write_config(tmp_path)
    code, text = run(status_main, "--config", str(config))
    assert code == 0
    assert "ci  http://127.0.0.1:9/hook  [distribution]" in text
    assert "pending 1  delivered 1  failed attempts 7  dead-lettered 1" in text  # other/x is filtered out
    assert "last error   1970-01-18T08:40:00Z  HTTP 500: boom" in text
    assert "audit" in text and "pending 4" in text
    assert "off (disabled)" in text
    code, raw = run(status_main, "--config", str(config), "--json")
    doc = json.loads(raw)
    assert doc["outbox"] == str(tmp_path / "ob")
    ci = {e["name"]: e for e in doc["endpoints"]}["ci"]
    assert (ci["pending"], ci["delivered"], ci["failed"], ci["deadlettered"], ci["cursor"]) == (1, 1, 7, 1, 2)
    assert ci["last_success_at"] == 1_400_000.0


def test_replay_dead_letters(tmp_path: Path, outbox: Outbox) -> None:
    config = write_config(tmp_path)
    code, text = run(replay_main, "--config", str(config), "--endpoint", "ci", "--dead-letter")
    assert code == 0 and text == "ci: 1 events queued for re-delivery\n"
    assert outbox.dead_letters("ci") == []
    (path,) = outbox.replay_files("ci")
    assert [r.id for r in read_records(path)[0]] == ["id-2"]
    code, raw = run(status_main, "--config", str(config), "--json")
    ci = {e["name"]: e for e in json.loads(raw)["endpoints"]}["ci"]
    assert (ci["pending"], ci["deadlettered"]) == (2, 0)  # the replayed event counts as pending again


def test_replay_a_time_range_applies_each_endpoints_filters(tmp_path: Path, outbox: Outbox) -> None:
    config = write_config(tmp_path)
    code, text = run(replay_main, "--config", str(config), "--since", "1970-01-20T00:00:00Z")
    assert code == 0
    assert text.splitlines() == ["ci: 1 events queued for re-delivery", "audit: 2 events queued for re-delivery"]
    assert [r.id for r in read_records(outbox.replay_files("ci")[0])[0]] == ["id-3"]
    assert [r.id for r in read_records(outbox.replay_files("audit")[0])[0]] == ["id-3", "id-4"]
    code, _ = run(replay_main, "--config", str(config), "--endpoint", "audit",
                  "--since", "1970-01-01T00:00:00Z", "--until", "1970-01-20T00:00:00Z")
    assert [r.id for r in read_records(outbox.replay_files("audit")[1])[0]] == ["id-1", "id-2"]


def test_usage_errors(tmp_path: Path, outbox: Outbox, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert run(replay_main, "--config", str(config))[0] == 2
    assert "give --dead-letter or --since" in capsys.readouterr().err
    assert run(replay_main, "--config", str(config), "--endpoint", "nope", "--dead-letter")[0] == 2
    assert "no endpoint named 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text("notifications: {endpoints: [{name: x, url: ftp://x}]}")
    assert run(status_main, "--config", str(bad))[0] == 2
    assert "url must be http(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["replay", "--config", str(config), "--since", "yesterday-ish"])


def test_parse_time() -> None:
    assert parse_time("1970-01-02T00:00:00Z") == 86400.0
    assert parse_time("1970-01-02T01:00:00+01:00") == 86400.0
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("90m", now=10_000.0) == 10_000.0 - 5400


def test_berth_command_runs_the_webhooks_cli(tmp_path: Path, outbox: Outbox) -> None:
    config = write_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "registry", "webhooks", "status", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "dead-lettered 1" in result.stdout
