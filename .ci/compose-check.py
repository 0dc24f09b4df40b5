#!/usr/bin/env python3
"""Validate the compose files with `docker compose config` and check what each variant must carry.

Usage: compose-check.py COMPOSE_BINARY FOLDER
FOLDER holds the compose files, a faceverify.env and a faceverify-scale.env (copies of the examples) and
docker/nginx-scale.conf.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

# Variables the scale stack takes from the shell: left out of its checks unless a check sets them, so
# that the shell that runs this cannot change what is checked.
SCALE_VARIABLES = ("FACEVERIFY_REPLICAS", "FACEVERIFY_PORT", "FACEVERIFY_TAG", "POSTGRES_PASSWORD")


def configuration(
    compose: str, folder: Path, *files: str, env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> dict:
    """The merged, validated configuration, as docker compose resolves it; `env`: the scale stack's
    variables, set as given, the others unset; `profiles`: those enabled."""
    command = [compose, "--project-directory", str(folder)]
    for name in files:
        command += ["-f", str(folder / name)]
    for profile in profiles:
        command += ["--profile", profile]
    environment = dict(os.environ)
    if env is not None:
        environment = {k: v for k, v in environment.items() if k not in SCALE_VARIABLES} | env
    done = subprocess.run(
        [*command, "config", "--format", "json"], capture_output=True, text=True, env=environment
    )
    if done.returncode != 0:
        sys.exit(f"docker compose config failed for {', '.join(files)}:\n{done.stderr}")
    return json.loads(done.stdout)


def services(compose: str, folder: Path, *files: str, env: dict[str, str] | None = None) -> dict:
    """Every service of the merged, validated configuration (see configuration)."""
    return configuration(compose, folder, *files, env=env)["services"]


def resolved(compose: str, folder: Path, *files: str) -> dict:
    """The faceverify service of the merged, validated configuration."""
    return services(compose, folder, *files)["faceverify"]


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

    check_scale(compose, folder)


SCALE = "docker-compose.scale.yml"
SCALE_GPU = "docker-compose.scale.gpu.yml"


def healthy_dependency(service: dict, name: str) -> None:
    """`service` starts only once `name` reports healthy."""
    condition = service.get("depends_on", {}).get(name, {}).get("condition")
    assert condition == "service_healthy", f"must depend on {name} being healthy: {service.get('depends_on')}"


def check_scale(compose: str, folder: Path) -> None:
    """docker-compose.scale.yml: PostgreSQL, faceverify replicas on it (each its own /data), nginx."""
    stack = services(compose, folder, SCALE, env={})
    assert set(stack) == {"postgres", "faceverify", "nginx"}, sorted(stack)

    postgres = stack["postgres"]
    assert re.fullmatch(r"postgres:\d+(-[a-z]+)?", postgres["image"]), (
        f"postgres must be pinned to a major version: {postgres['image']}"
    )
    assert "POSTGRES_PASSWORD" in postgres["environment"], "the password must come from faceverify-scale.env"
    assert any(v["type"] == "volume" and v.get("source") for v in postgres.get("volumes", [])), (
        "postgres needs a named volume"
    )
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"]), postgres.get("healthcheck")

    replicas = stack["faceverify"]
    assert replicas["build"]["args"]["FLAVOUR"] == "cpu", replicas["build"]
    environment = replicas["environment"]
    assert "FV_API_KEYS" in environment, "API keys must come from faceverify.env"
    url = environment.get("FV_DATABASE_URL", "")
    password = postgres["environment"]["POSTGRES_PASSWORD"]
    assert url == f"postgresql://faceverify:{password}@postgres:5432/faceverify", (
        f"FV_DATABASE_URL must come from faceverify-scale.env, its password put in by compose: {url}"
    )
    healthy_dependency(replicas, "postgres")
    assert "faceverify-healthcheck" in " ".join(replicas["healthcheck"]["test"]), replicas["healthcheck"]
    assert replicas["restart"] == "unless-stopped", replicas.get("restart")
    assert replicas["deploy"]["replicas"] == 2, replicas["deploy"]
    # An anonymous volume: one per container. A named one would be one data dir for every replica,
    # and every replica but the first would be refused its lock.
    data = [v for v in replicas.get("volumes", []) if v["target"] == "/data"]
    assert len(data) == 1 and data[0]["type"] == "volume" and not data[0].get("source"), (
        f"each replica needs its own (anonymous) /data volume: {data}"
    )
    assert "container_name" not in replicas, "replicas cannot share one container name"

    for name in ("postgres", "faceverify"):
        assert not stack[name].get("ports"), f"only the load balancer publishes a port, not {name}"
    nginx = stack["nginx"]
    healthy_dependency(nginx, "faceverify")
    assert [(p["target"], p["published"]) for p in nginx["ports"]] == [(8000, "8000")], nginx["ports"]
    config = [v for v in nginx.get("volumes", []) if v["target"] == "/etc/nginx/nginx.conf"]
    assert len(config) == 1 and config[0]["type"] == "bind" and config[0].get("read_only"), config
    mounted = Path(config[0]["source"])
    assert mounted.resolve() == (folder / "docker" / "nginx-scale.conf").resolve(), config[0]
    text = mounted.read_text()
    assert re.search(r"^\s*listen 8000;", text, re.M), "nginx must listen on the port compose publishes"
    assert re.search(r"^\s*server faceverify:8000 resolve\b", text, re.M), (
        "nginx must find the replicas by the service's name, re-resolved as they scale"
    )
    assert nginx["restart"] == "unless-stopped", nginx.get("restart")
    print(
        f"{SCALE}: valid; postgres (pinned major, named volume, pg_isready), 2 faceverify replicas "
        "(FV_DATABASE_URL and keys from the env files, each its own /data, healthy postgres first, "
        "health, restarts, no port), nginx (publishes 8000, its config mounted)"
    )

    chosen = services(compose, folder, SCALE, env={"FACEVERIFY_REPLICAS": "4", "FACEVERIFY_PORT": "9000"})
    assert chosen["faceverify"]["deploy"]["replicas"] == 4, chosen["faceverify"]["deploy"]
    assert chosen["nginx"]["ports"][0]["published"] == "9000", chosen["nginx"]["ports"]
    print(f"{SCALE}: FACEVERIFY_REPLICAS and FACEVERIFY_PORT are taken")

    gpu = services(compose, folder, SCALE, SCALE_GPU, env={})["faceverify"]
    assert gpu["build"]["args"]["FLAVOUR"] == "gpu", gpu["build"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], devices
    assert gpu["deploy"]["replicas"] == 2, gpu["deploy"]
    print(f"{SCALE} + {SCALE_GPU}: valid; GPU image, a GPU reservation for each replica")

    check_scale_milvus(compose, folder)


MILVUS_SERVICES = ("milvus-etcd", "milvus-minio", "milvus")


def check_scale_milvus(compose: str, folder: Path) -> None:
    """--profile milvus: Milvus standalone with etcd and MinIO, on an internal network but for Milvus,
    which the replicas reach once the env file's Milvus lines are uncommented."""
    plain = services(compose, folder, SCALE, env={})
    dependency = plain["faceverify"]["depends_on"]["milvus"]
    assert dependency.get("condition") == "service_healthy" and dependency.get("required") is False, (
        f"the replicas wait for Milvus only where it runs: {dependency}"
    )

    # The operator's step: the env file's Milvus lines uncommented.
    env_file = folder / "faceverify-scale.env"
    original = env_file.read_text()
    lines = [re.sub(r"^# (FV_VECTOR_INDEX|FV_MILVUS_URI)=", r"\1=", line) for line in original.splitlines()]
    env_file.write_text("\n".join(lines) + "\n")
    try:
        config = configuration(compose, folder, SCALE, env={}, profiles=("milvus",))
    finally:
        env_file.write_text(original)
    stack = config["services"]
    assert set(stack) == {"postgres", "faceverify", "nginx", *MILVUS_SERVICES}, sorted(stack)
    for name in MILVUS_SERVICES:
        service = stack[name]
        assert re.fullmatch(r"[\w./-]+:(v|RELEASE\.)[\w.-]*\d[\w.-]*", service["image"]), (
            f"{name} must be pinned to a release: {service['image']}"
        )
        assert not service.get("ports"), f"{name} must publish no port"
        assert service.get("healthcheck", {}).get("test"), f"{name} needs a health check"
        assert any(v["type"] == "volume" and v.get("source") for v in service["volumes"]), (
            f"{name} needs a named volume"
        )
        assert service["restart"] == "unless-stopped", service.get("restart")
    assert stack["milvus"]["image"] == "milvusdb/milvus:v2.3.5", "the Milvus version the tests run"
    for name in ("milvus-etcd", "milvus-minio"):
        assert set(stack[name]["networks"]) == {"milvus-backend"}, f"{name}: {stack[name]['networks']}"
    assert set(stack["milvus"]["networks"]) == {"default", "milvus-backend"}, stack["milvus"]["networks"]
    assert config["networks"]["milvus-backend"].get("internal") is True, config["networks"]
    environment = stack["milvus"]["environment"]
    assert environment["ETCD_ENDPOINTS"] == "milvus-etcd:2379", environment
    assert environment["MINIO_ADDRESS"] == "milvus-minio:9000", environment
    for name in MILVUS_SERVICES[:2]:
        healthy_dependency(stack["milvus"], name)
    replicas = stack["faceverify"]
    assert replicas["environment"].get("FV_VECTOR_INDEX") == "milvus", replicas["environment"]
    assert replicas["environment"].get("FV_MILVUS_URI") == "http://milvus:19530", replicas["environment"]
    healthy_dependency(replicas, "milvus")
    print(
        f"{SCALE} --profile milvus: valid; Milvus 2.3.5 standalone, etcd and MinIO (pinned, named volumes, "
        "health, no ports, etcd and MinIO on an internal network); the replicas wait for it and, with the "
        "env file's lines uncommented, search it"
    )


if __name__ == "__main__":
    main()
