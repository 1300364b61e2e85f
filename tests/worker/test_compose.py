"""docker-compose.yml and the Dockerfile run exactly the Procfile's processes (docker is not run).

The rule the compose file follows: each app service's command is ``sh -c 'exec <Procfile line>'``
with every ``$`` written ``$$`` (Compose's escape, so ``${PORT:-...}`` reaches the container's
shell instead of being filled in from the host), and ``PORT`` set in the service's environment.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings
from worker.celery_app import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("web", "worker", "beat", "flower", "oneroster")  # api.md, "Processes"
PORT_DEFAULT = re.compile(r"\$\{PORT:-(\d+)\}")
SETTINGS_ENV = {f"CB_{name.upper()}" for name in Settings.model_fields}


def procfile() -> dict[str, str]:
    lines: dict[str, str] = {}
    for raw in (ROOT / "Procfile").read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        name, sep, command = raw.partition(":")
        assert sep, f"Procfile line without 'name:': {raw!r}"
        assert name.strip() not in lines, f"process {name!r} defined twice"
        lines[name.strip()] = command.strip()
    return lines


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def unescape(text: str) -> str:
    """What Compose hands the container for a string without variables: ``$$`` becomes ``$``."""
    return text.replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        return {k: (v if sep else None) for k, sep, v in (item.partition("=") for item in env)}
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) of every published port."""
    out: list[tuple[str, int]] = []
    for spec in service.get("ports") or []:
        parts = str(spec).split(":")
        host = parts[0] if len(parts) == 3 else ""
        out.append((host, int(parts[-1].split("/")[0])))
    return out


def test_procfile_has_the_processes_api_md_names() -> None:
    assert tuple(procfile()) == PROCESSES


def test_every_procfile_process_is_a_compose_service_running_its_line(
    compose: dict[str, Any],
) -> None:
    for name, line in procfile().items():
        command = services(compose)[name]["command"]
        assert isinstance(command, list) and command[:2] == ["sh", "-c"], name
        assert len(command) == 3, name
        script = command[2]
        # A lone `$` would be filled in by Compose from the host's environment, not the container's.
        assert "$" not in script.replace("$$", ""), f"{name}: unescaped $ in {script!r}"
        assert unescape(script) == f"exec {line}", name


def test_services_listening_on_port_get_port_and_publish_it(compose: dict[str, Any]) -> None:
    for name, line in procfile().items():
        service = services(compose)[name]
        default = PORT_DEFAULT.search(line)
        if default is None:
            assert "PORT" not in environment(service), name
            assert not published(service), f"{name} listens on no port but publishes one"
            continue
        port = environment(service).get("PORT")
        assert port == default.group(1), f"{name}: PORT {port!r}, Procfile default {default[1]}"
        if name == "web":  # published only through the proxy (next test)
            assert not published(service), "the API is published directly, bypassing the proxy"
            continue
        assert int(port) in [p for _, p in published(service)], name


def nginx_conf() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


def nginx_directives(text: str) -> dict[str, list[str]]:
    """Every ``name value...;`` of the config, comments dropped (values joined by spaces)."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, _, value = line[:-1].partition(" ")
            found.setdefault(name, []).append(value.strip())
    return found


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert match is not None, value
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def test_the_api_is_published_through_the_nginx_proxy_with_limits(
    compose: dict[str, Any],
) -> None:
    svc = services(compose)
    proxy = svc["proxy"]
    assert proxy["image"].startswith("nginx:") and "alpine" in proxy["image"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    web_port = int(environment(svc["web"])["PORT"] or 0)
    conf = nginx_directives(nginx_conf())
    assert conf["server"] == [f"web:{web_port}"]  # the upstream is the web service's PORT
    (listen,) = conf["listen"]
    assert ("127.0.0.1", int(listen)) in published(proxy)
    assert [p for _, p in published(proxy)] == [int(listen)]
    # The API's host port stays what the docs name (8000), now answered by the proxy.
    assert any(str(spec).startswith("127.0.0.1:8000:") for spec in proxy["ports"])
    # The limits docs/deploy.md documents.
    assert seconds(conf["client_header_timeout"][0]) <= 10
    assert seconds(conf["client_body_timeout"][0]) <= 60
    assert seconds(conf["keepalive_timeout"][0]) <= 10
    count, size = conf["large_client_header_buffers"][0].split()
    assert int(count) * int(size.rstrip("k")) <= 16, "headers may exceed 16 KiB"
    assert conf["client_max_body_size"] == ["4m"]  # CB_API_MAX_BODY_BYTES
    assert conf["limit_conn_status"] == ["503"]
    zone = conf["limit_conn_zone"][0].split()[1].partition("=")[2].split(":")[0]
    assert conf["limit_conn"][0].split()[0] == zone
    assert conf["proxy_request_buffering"] == ["on"]


def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install -y nginx-light)")
    # `web` resolves only inside compose: check the same file with the upstream on loopback.
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf().replace("server web:", "server 127.0.0.1:"))
    done = subprocess.run(
        [binary, "-t", "-q", "-p", str(tmp_path), "-c", str(conf), "-g", "error_log stderr;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_published_ports_are_bound_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for host, port in published(service):
            assert host == "127.0.0.1", f"{name} publishes {port} on all interfaces"


def test_listening_processes_accept_connections_from_other_containers() -> None:
    for name, line in procfile().items():
        if PORT_DEFAULT.search(line) is None:
            continue
        args = shlex.split(line.replace("=", " "))
        if "--host" in args:
            assert args[args.index("--host") + 1] == "0.0.0.0", name
        else:
            # flower: every interface with a login, else loopback (worker/flower_launcher.py)
            assert "--address" not in args, name


def test_redis_always_runs_and_rabbitmq_only_on_request(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert set(svc) == {"redis", "rabbitmq", "proxy", *PROCESSES}
    assert svc["redis"]["image"].startswith("redis:")
    assert "rabbitmq" in svc["rabbitmq"].get("profiles", []), "rabbitmq must be optional"
    assert svc["rabbitmq"]["image"].startswith("rabbitmq:")
    assert 5672 in [p for _, p in published(svc["rabbitmq"])]
    for name, service in svc.items():
        if name != "rabbitmq":
            assert not service.get("profiles"), f"{name} would not start by default"
        # Depending on a service whose profile is off makes `docker compose up` fail.
        assert "rabbitmq" not in (service.get("depends_on") or {}), name


def test_dependencies_exist_and_redis_users_wait_for_it(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name, service in svc.items():
        for dep in service.get("depends_on") or {}:
            assert dep in svc, f"{name} depends on unknown {dep}"
    for name in ("web", "worker", "beat", "flower"):
        assert svc[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert "healthcheck" in svc["redis"]


def test_app_services_share_one_image_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    images = {services(compose)[name]["image"] for name in PROCESSES}
    assert len(images) == 1
    for name in PROCESSES:
        assert services(compose)[name]["build"] == ".", name


def test_environment_names_are_settings_the_service_reads(compose: dict[str, Any]) -> None:
    for name in PROCESSES:
        for var in environment(services(compose)[name]):
            known = var in SETTINGS_ENV or var == "PORT" or var.startswith("FLOWER_")
            assert known, f"{name}: {var} is not a setting in core/settings.py"


def test_app_environment_builds_valid_settings_pointing_at_compose_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = services(compose)
    for name in ("web", "worker", "beat", "flower"):
        env = environment(svc[name])
        for var in SETTINGS_ENV:
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            if value is not None and var in SETTINGS_ENV:
                monkeypatch.setenv(var, value)
        settings = Settings(_env_file=None)
        assert settings.redis_url.startswith("redis://redis:"), name
        # Unset CB_BROKER_URL: the broker is the compose Redis.
        assert settings.effective_broker_url == settings.redis_url, name
        sim_port = environment(svc["oneroster"])["PORT"]
        assert settings.oneroster_base_url == f"http://oneroster:{sim_port}", name
        # Secrets are passed through from the operator's shell, never written in the file.
        for secret in ("CB_API_TOKENS", "CB_ONEROSTER_CLIENT_SECRET", "CB_API_METRICS_TOKEN"):
            assert env.get(secret) is None, f"{name}: {secret} has a value in the compose file"


def test_worker_consumes_every_queue_celery_routes_to() -> None:
    args = shlex.split(procfile()["worker"])
    queues = set(args[args.index("-Q") + 1].split(","))
    routed = {route["queue"] for route in celery_app.conf.task_routes.values()}
    assert routed <= queues
    assert "-E" in args  # task events, so Flower shows the tasks


def test_dockerfile_default_command_is_the_web_line() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    assert re.search(r"^WORKDIR /app$", text, re.MULTILINE)
    for package in ("core", "tasks", "worker"):
        assert re.search(rf"^COPY {package} \./{package}$", text, re.MULTILINE), package
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1)) == ["sh", "-c", f"exec {procfile()['web']}"]
