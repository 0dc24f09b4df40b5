#!/usr/bin/env python3
"""Validate the compose files with `docker compose config` and check what each variant must carry.

Usage: compose-check.py COMPOSE_BINARY FOLDER   (FOLDER holds the compose files and a faceverify.env)
"""

import json
import subprocess
import sys
from pathlib import Path


def resolved(compose: str, folder: Path, *files: str) -> dict:
    """The merged, validated configuration, as docker compose resolves it."""
    command = [compose, "--project-directory", str(folder)]
    for name in files:
        command += ["-f", str(folder / name)]
    done = subprocess.run([*command, "config", "--format", "json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"docker compose config failed for {', '.join(files)}:\n{done.stderr}")
    return json.loads(done.stdout)["services"]["faceverify"]


def check_common(service: dict, flavour: str) -> None:
    """What both variants need: the image flavour, keys from the env file, /data, health, restarts."""
    assert service["build"]["args"]["FLAVOUR"] == flavour, service["build"]
    assert "FV_API_KEYS" in service["environment"], "API keys must come from faceverify.env"
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in service["volumes"]), (
        "no /data volume"
    )
    assert "faceverify-healthcheck" in " ".join(service["healthcheck"]["test"]), service["healthcheck"]
    assert service["restart"] == "unless-stopped", service.get("restart")


def main() -> None:
    compose, folder = sys.argv[1], Path(sys.argv[2])
    gpu = resolved(compose, folder, "docker-compose.yml")
    check_common(gpu, "gpu")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], devices
    print("docker-compose.yml: valid; GPU reservation (nvidia, count 1), /data volume, env file, health")

    cpu = resolved(compose, folder, "docker-compose.yml", "docker-compose.cpu.yml")
    check_common(cpu, "cpu")
    reservations = cpu.get("deploy", {}).get("resources", {}).get("reservations", {})
    assert not reservations.get("devices"), reservations
    print("docker-compose.yml + docker-compose.cpu.yml: valid; CPU image, no GPU reservation")


if __name__ == "__main__":
    main()
