"""Benchmark: ``berth pull``/``berth push`` against skopeo on a three-layer ~300 MB image, same run, same registry.

Builds the image offline (3 x 100 MB random layers, gzip), then for each round and tool pushes it
to a freshly started, empty registry (so nothing can be skipped or mounted) and pulls it back into
an empty store (``berth``: a new ``$BERTH_HOME``; skopeo: a new ``oci:`` directory). Wall time of
each command, including process start-up, is what is compared.

    python bench/client_bench.py [--layer-mb 100] [--rounds 2] [--server reference|berth] [--json FILE]

Prints one line per measurement and the ratios ``skopeo time / berth time`` (above 1: berth is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images import build_image  # noqa: E402
from tests.servers import filesystem_config, start_registry  # noqa: E402
from tests.tools import require_tool  # noqa: E402


def _run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return took


def main() -> int:
    """Run the benchmark; returns an exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", choices=["reference", "berth"], default="reference")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    skopeo = require_tool("skopeo")
    work = Path(tempfile.mkdtemp(prefix="berth-client-bench-"))
    try:
        print(f"building a 3 x {args.layer_mb} MB image in {work} ...", flush=True)
        image = build_image(work / "img", "bench", [args.layer_mb << 20] * 3, seed=42, docker_archive=False)
        size = image.total_size
        archive = work / "bench-oci.tar"
        with tarfile.open(archive, "w") as tar:
            for path in sorted(image.layout.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(image.layout)), recursive=False)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        base_env["PYTHONPATH"] = str(ROOT)
        berth = [sys.executable, "-m", "registry.client.cli"]
        seed_home = work / "seed-home"
        seed_env = dict(base_env, BERTH_HOME=str(seed_home), DOCKER_CONFIG=str(work / "docker"))
        _run([*berth, "load", "-q", "-i", str(archive)], seed_env)
        results: dict[str, list[float]] = {"berth push": [], "skopeo push": [], "berth pull": [], "skopeo pull": []}
        for round_no in range(args.rounds):
            for tool in ("berth", "skopeo"):
                reg_dir = work / f"reg-{round_no}-{tool}"
                server = start_registry(args.server, filesystem_config(reg_dir / "data"), reg_dir / "server")
                try:
                    ref = f"{server.addr}/bench/{tool}:latest"
                    if tool == "berth":
                        (seed_home / ".berth" / "sources.json").unlink(missing_ok=True)
                        _run([*berth, "tag", image.manifest_digest, ref], seed_env)
                        push = _run([*berth, "push", "-q", ref], seed_env)
                        home = work / f"pull-home-{round_no}"
                        pull = _run([*berth, "pull", "-q", ref], dict(seed_env, BERTH_HOME=str(home)))
                        shutil.rmtree(home, ignore_errors=True)
                    else:
                        push = _run([skopeo, "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
                                     image.oci_ref, f"docker://{ref}"], base_env)
                        dest = work / f"skopeo-pull-{round_no}"
                        pull = _run([skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:latest"],
                                    base_env)
                        shutil.rmtree(dest, ignore_errors=True)
                finally:
                    server.stop()
                    shutil.rmtree(reg_dir, ignore_errors=True)
                results[f"{tool} push"].append(push)
                results[f"{tool} pull"].append(pull)
                mb = size / 1e6
                print(f"round {round_no + 1} {tool:6s} push {push:6.2f}s ({mb / push:6.1f} MB/s)  "
                      f"pull {pull:6.2f}s ({mb / pull:6.1f} MB/s)", flush=True)
        best = {k: min(v) for k, v in results.items()}
        summary: dict[str, Any] = {
            "server": args.server, "image_bytes": size, "rounds": args.rounds, "best_seconds": best,
            "push_ratio_skopeo_over_berth": best["skopeo push"] / best["berth push"],
            "pull_ratio_skopeo_over_berth": best["skopeo pull"] / best["berth pull"],
        }
        print(f"best of {args.rounds}: berth push {best['berth push']:.2f}s, skopeo push {best['skopeo push']:.2f}s, "
              f"ratio {summary['push_ratio_skopeo_over_berth']:.2f}; berth pull {best['berth pull']:.2f}s, "
              f"skopeo pull {best['skopeo pull']:.2f}s, ratio {summary['pull_ratio_skopeo_over_berth']:.2f} "
              f"(skopeo time / berth time; >1 means berth is faster)")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
