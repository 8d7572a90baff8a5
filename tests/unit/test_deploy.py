"""The deployment files, validated structurally: none of them can run here.

There is no systemd as PID 1, no Docker engine and no cluster on this machine, so
these tests parse what can be parsed and check it against the code it must agree
with: the unit's `ExecStart`, the image's `CMD` and the Deployment's `args` go
through the real CLI parser; the ConfigMap's console.yaml goes through the real
config loader with the Secret's keys as its environment; the probe command is run
against a real local HTTP server.
"""

from __future__ import annotations

import http.server
import re
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pytest
import yaml

from dtp_console.cli import build_parser
from dtp_console.config.loader import ConfigError, load_config, secrets_permission_warning
from dtp_console.config.model import TwinzoConfig
from dtp_console.stores.config import StoresConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "dtp-console.service"
K8S = DEPLOY / "k8s"
CONFIG_PATH = "/etc/dtp-console/console.yaml"
RUN_ARGS = ["run", "--no-ui", "--config", CONFIG_PATH]
NAMESPACE = "dtp-platform"

#: What a placeholder looks like; anything else in a secret slot is a finding.
_PLACEHOLDER = re.compile(r"^(change-me[\w+-]*|your-[a-z-]+|placeholder)$")
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|PRIVATE", re.IGNORECASE)
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


# --- systemd -----------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (keys may repeat).

    systemd.syntax(7): `#`/`;` comments, `[Section]` headers, `Key=Value`, a trailing
    backslash continues the line. An empty assignment (`Key=`) is kept as "".
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not Key=Value: {raw!r}"
        assert current is not None, f"line {number}: assignment outside a section"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"line {number}: bad key"
        current.setdefault(key.strip(), []).append(value.strip())
    assert not pending, "a continuation at the end of the file"
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def _seconds(value: str) -> float:
    """A systemd time span (`30s`, `1min 30s`, `10min`, `45`) in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "": 1}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    for number, unit_name in parts:
        total += float(number) * units[unit_name]
    return total


def test_unit_parser_keeps_duplicates_and_continuations() -> None:
    parsed = parse_unit("[Service]\n# c\nA=1\nA=2\nB=x \\\n  y\nC=\n")
    assert parsed == {"Service": {"A": ["1", "2"], "B": ["x y"], "C": [""]}}
    with pytest.raises(AssertionError):
        parse_unit("[Service]\nnot an assignment\n")


def test_unit_runs_as_a_watched_notify_service(unit: dict[str, dict[str, list[str]]]) -> None:
    assert set(unit) == {"Unit", "Service", "Install"}
    assert _one(unit, "Service", "Type") == "notify"
    assert _one(unit, "Service", "NotifyAccess") == "main"
    assert _one(unit, "Service", "Restart") == "on-failure"
    assert _one(unit, "Service", "User") == "dtp-console"
    assert _one(unit, "Service", "Group") == "dtp-console"
    # A refused config (exit 2) is not retried forever.
    assert "2" in _one(unit, "Service", "RestartPreventExitStatus").split()
    watchdog = _seconds(_one(unit, "Service", "WatchdogSec"))
    assert 10 <= watchdog <= 300
    # The stop timeout covers the outbox and spool drains the config defaults allow.
    drains = (
        TwinzoConfig.model_fields["drain_timeout_s"].default
        + StoresConfig.model_fields["drain_timeout_s"].default
    )
    assert _seconds(_one(unit, "Service", "TimeoutStopSec")) >= drains + 10
    assert _one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in _one(unit, "Unit", "After")


def test_unit_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert _one(unit, "Service", key) == value, key
    # AF_UNIX is what sd_notify needs; nothing beyond IP for the network.
    families = set(_one(unit, "Service", "RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}
    filters = unit["Service"]["SystemCallFilter"]
    assert filters[0] == "@system-service"
    denied = [f for f in filters[1:] if f.startswith("~")]
    assert denied, "no deny list after @system-service"
    assert "@privileged" in denied[0]


def test_unit_writable_paths_are_exactly_its_state(unit: dict[str, dict[str, list[str]]]) -> None:
    workdir = _one(unit, "Service", "WorkingDirectory")
    state = "/var/lib/" + _one(unit, "Service", "StateDirectory")
    logs = "/var/log/" + _one(unit, "Service", "LogsDirectory")
    writable = set(" ".join(unit["Service"]["ReadWritePaths"]).split())
    assert workdir == state
    assert writable == {state, logs}
    # The config's relative defaults (var/platform.sqlite3, var/blobs) land in the state dir.
    assert not StoresConfig().sqlite_path.is_absolute()


def test_exec_start_is_what_the_cli_parses(unit: dict[str, dict[str, list[str]]]) -> None:
    argv = shlex.split(_one(unit, "Service", "ExecStart"))
    program = PurePosixPath(argv[0])
    assert program.is_absolute()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert program.name in scripts  # the console script pip installs
    assert argv[1:] == RUN_ARGS
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.no_ui is True
    assert args.config == CONFIG_PATH
    assert args.duration is None  # runs until stopped
    config_dir = "/etc/" + _one(unit, "Service", "ConfigurationDirectory")
    assert str(PurePosixPath(args.config).parent) == config_dir
    assert str(PurePosixPath(_one(unit, "Service", "EnvironmentFile").lstrip("-")).parent) == (
        config_dir
    )


def test_the_cli_check_can_fail() -> None:
    # The same parser refuses a misspelt flag (what a stale ExecStart would carry).
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--no-iu", "--config", CONFIG_PATH])


def _env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
        assert key not in values, f"{key} twice"
        values[key] = value
    return values


def test_env_file_holds_placeholders_only() -> None:
    values = _env_file(DEPLOY / "systemd" / "dtp-console.env")
    assert values
    for key, value in values.items():
        if _SECRET_NAME.search(key):
            assert _PLACEHOLDER.match(value), f"{key} is not a placeholder"


def test_sysusers_and_tmpfiles_agree_with_the_unit(unit: dict[str, dict[str, list[str]]]) -> None:
    user = _one(unit, "Service", "User")
    sysusers = [
        shlex.split(line)
        for line in (DEPLOY / "systemd" / "dtp-console.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sysusers == [["u", user, "-", "dtp-console operations console", "/var/lib/dtp-console",
                         "/usr/sbin/nologin"]]  # fmt: skip
    entries = {}
    for line in (DEPLOY / "systemd" / "dtp-console.tmpfiles.conf").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, path, mode, owner, group, _age = line.split()
        assert kind in {"d", "z"}, line
        assert re.fullmatch(r"0[0-7]{3}", mode), line
        assert not int(mode, 8) & 0o007, f"{path} is world-accessible"
        entries[path] = (kind, owner, group)
    assert entries[_one(unit, "Service", "WorkingDirectory")] == ("d", user, user)
    assert entries["/etc/dtp-console"] == ("d", "root", user)  # readable, not writable
    assert entries["/etc/dtp-console/dtp-console.env"][1:] == ("root", user)


# --- Docker --------------------------------------------------------------------------


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _json_array(arguments: str) -> list[str]:
    value = yaml.safe_load(arguments)  # a JSON array is YAML too
    assert isinstance(value, list), f"not the exec (JSON array) form: {arguments}"
    return [str(v) for v in value]


def test_dockerfile_is_multi_stage_slim_python_311(dockerfile: list[tuple[str, str]]) -> None:
    args = dict(a.split("=", 1) for i, a in dockerfile if i == "ARG" and "=" in a)
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    final = stages[-1]
    assert any(i == "COPY" and a.startswith("--from=build ") for i, a in final)
    # Only the package and its dependencies: no source tree, no tests in the final image.
    assert all(not a.startswith(("tests", ".", "dtp_console")) for i, a in final if i == "COPY")
    installs = [a for i, a in dockerfile if i == "RUN" and "pip install" in a]
    assert len(installs) == 1
    assert "pip install --no-compile ." in installs[0]
    assert "-e " not in installs[0]
    assert "[dev]" not in installs[0]


def test_dockerfile_runs_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    final = _stages(dockerfile)[-1]
    users = [a for i, a in final if i == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    # Nothing after USER switches back to root.
    after = final[[i for i, _ in final].index("USER") :]
    assert all(i != "USER" or a == users[-1] for i, a in after)
    assert _deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerfile_cmd_is_what_the_cli_parses(dockerfile: list[tuple[str, str]]) -> None:
    entrypoint = _json_array(next(a for i, a in dockerfile if i == "ENTRYPOINT"))
    cmd = _json_array(next(a for i, a in reversed(dockerfile) if i == "CMD"))
    assert entrypoint == ["dtp-console"]
    assert cmd == RUN_ARGS
    args = build_parser().parse_args(cmd)
    assert (args.command, args.no_ui, args.config) == ("run", True, CONFIG_PATH)
    workdir = [a for i, a in dockerfile if i == "WORKDIR"][-1]
    assert workdir == "/var/lib/dtp-console"
    assert any(i == "VOLUME" and workdir in a for i, a in dockerfile)


def test_dockerfile_carries_no_secret(dockerfile: list[tuple[str, str]]) -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "change-me" not in text
    for instruction, arguments in dockerfile:
        if instruction in {"ENV", "ARG", "LABEL"}:
            assert not _SECRET_NAME.search(arguments), arguments
        if instruction in {"COPY", "ADD"}:
            assert ".env" not in arguments, arguments
            assert "*" not in arguments, arguments


def test_dockerignore_allows_only_the_build_inputs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then the allowlist
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "dtp_console/"}
    assert "**/.env" in lines


def _healthcheck_code(dockerfile: list[tuple[str, str]]) -> list[str]:
    healthcheck = next(a for i, a in dockerfile if i == "HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    return _json_array(command)


def test_healthcheck_is_python_urllib_on_healthz(dockerfile: list[tuple[str, str]]) -> None:
    argv = _healthcheck_code(dockerfile)
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8470/healthz" in argv[2]
    assert "urllib.request" in argv[2]
    assert "timeout=" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


class _Health(http.server.BaseHTTPRequestHandler):
    status: ClassVar[dict[str, int]] = {"/healthz": 200, "/readyz": 503}

    def do_GET(self) -> None:
        self.send_response(self.status.get(self.path, 404))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _probe_exit(code: str, port: int) -> int:
    """Run a probe's `python -c` code with its port pointed at `port`."""
    assert ":8470/" in code
    patched = code.replace(":8470/", f":{port}/")
    result = subprocess.run(
        [sys.executable, "-c", patched], capture_output=True, timeout=30, check=False
    )
    return result.returncode


def test_healthcheck_passes_on_200_and_fails_otherwise(
    dockerfile: list[tuple[str, str]], health_server: int
) -> None:
    code = _healthcheck_code(dockerfile)[2]
    assert _probe_exit(code, health_server) == 0
    assert _probe_exit(code.replace("/healthz", "/readyz"), health_server) != 0  # 503
    assert _probe_exit(code.replace("/healthz", "/missing"), health_server) != 0  # 404
    assert _probe_exit(code, _closed_port()) != 0  # nothing listening


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- Kubernetes ----------------------------------------------------------------------


def _manifests() -> dict[Path, list[dict[str, Any]]]:
    found: dict[Path, list[dict[str, Any]]] = {}
    for path in sorted(K8S.rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        assert docs, f"{path} is empty"
        found[path] = docs
    return found


def _objects(kind: str | None = None) -> list[dict[str, Any]]:
    return [d for docs in _manifests().values() for d in docs if kind is None or d["kind"] == kind]


def _deployment() -> dict[str, Any]:
    (console,) = [d for d in _objects("Deployment") if d["metadata"]["name"] == "dtp-console"]
    return console


def _workloads() -> list[dict[str, Any]]:
    return _objects("Deployment") + _objects("StatefulSet")


_WITH_SPEC = {"Deployment", "StatefulSet", "Service", "PersistentVolumeClaim", "NetworkPolicy"}


def test_every_manifest_parses_with_required_keys() -> None:
    manifests = _manifests()
    assert len(manifests) >= 8
    for path, docs in manifests.items():
        for doc in docs:
            where = f"{path.relative_to(K8S)}: {doc.get('kind')}"
            assert isinstance(doc.get("apiVersion"), str), where
            assert isinstance(doc.get("kind"), str), where
            if doc["kind"] == "Kustomization":
                continue
            assert doc["metadata"]["name"], where
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == NAMESPACE, where
            if doc["kind"] in _WITH_SPEC:
                assert isinstance(doc.get("spec"), dict), where
    assert [d["metadata"]["name"] for d in _objects("Namespace")] == [NAMESPACE]


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = _objects("Kustomization")
    listed = {K8S / entry for entry in kustomization["resources"]}
    on_disk = {p for p in _manifests() if p.name != "kustomization.yaml"}
    assert listed == on_disk
    assert kustomization["namespace"] == NAMESPACE


def test_the_four_stores_and_the_console_are_there() -> None:
    stateful = {d["metadata"]["name"] for d in _objects("StatefulSet")}
    assert stateful == {"timescaledb", "influxdb", "neo4j", "minio"}
    assert {d["metadata"]["name"] for d in _objects("Deployment")} == {"dtp-console"}
    # Same image lines as the compose stack (deploy/compose.yaml).
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for workload in _objects("StatefulSet"):
        name = workload["metadata"]["name"]
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["image"] == compose[name]["image"], name


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_every_workload_is_probed_limited_and_non_root(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("automountServiceAccountToken") is False
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for container in _containers(workload):
        name = container["name"]
        limits = container["resources"]["limits"]
        assert {"cpu", "memory"} <= set(limits), name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
    for container in pod["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in container, f"{container['name']}: no {probe}"


def test_services_select_their_workloads_ports() -> None:
    workloads = {w["metadata"]["name"]: w for w in _workloads()}
    for service in _objects("Service"):
        workload = workloads[service["metadata"]["name"]]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["containerPort"] for c in _containers(workload) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def _probe_code(probe: dict[str, Any]) -> str:
    argv = probe["exec"]["command"]
    assert argv[:2] == ["python", "-c"]
    return str(argv[2])


def test_console_deployment_runs_the_cli_and_probes_healthz_readyz(health_server: int) -> None:
    console = _deployment()
    assert console["spec"]["replicas"] == 1  # two consoles would post every position twice
    assert console["spec"]["strategy"]["type"] == "Recreate"
    pod = console["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert container["args"] == RUN_ARGS
    assert (args.command, args.no_ui, args.config) == ("run", True, CONFIG_PATH)
    # The drains fit in the grace period.
    drains = (
        TwinzoConfig.model_fields["drain_timeout_s"].default
        + StoresConfig.model_fields["drain_timeout_s"].default
    )
    assert pod["terminationGracePeriodSeconds"] >= drains + 10
    liveness = _probe_code(container["livenessProbe"])
    readiness = _probe_code(container["readinessProbe"])
    startup = _probe_code(container["startupProbe"])
    assert "http://127.0.0.1:8470/healthz" in liveness
    assert "http://127.0.0.1:8470/healthz" in startup
    assert "http://127.0.0.1:8470/readyz" in readiness
    # Run for real against a local server: /healthz 200 passes, /readyz 503 fails.
    assert _probe_exit(liveness, health_server) == 0
    assert _probe_exit(readiness, health_server) != 0
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"]["mountPath"] == str(PurePosixPath(CONFIG_PATH).parent)
    assert mounts["config"]["readOnly"] is True
    assert volumes["config"]["configMap"]["name"] == _configmap()["metadata"]["name"]
    assert mounts["state"]["mountPath"] == container["workingDir"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim in {p["metadata"]["name"] for p in _objects("PersistentVolumeClaim")}
    (env_from,) = container["envFrom"]
    assert env_from["secretRef"]["name"] == _secret()["metadata"]["name"]


def _secret() -> dict[str, Any]:
    (secret,) = _objects("Secret")
    return secret


def _configmap() -> dict[str, Any]:
    (configmap,) = _objects("ConfigMap")
    return configmap


def test_secret_holds_placeholders_only() -> None:
    secret = _secret()
    assert "data" not in secret  # base64 would hide what is in it
    values = secret["stringData"]
    assert values
    for key, value in values.items():
        assert _PLACEHOLDER.match(str(value)), f"{key} is not a placeholder"
    # Every key a workload reads exists.
    for workload in _workloads():
        for container in _containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in values, ref["key"]


def _console_yaml() -> str:
    text = _configmap()["data"]["console.yaml"]
    assert isinstance(text, str)
    return text


def test_configmap_console_yaml_loads_with_the_project_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env in the working directory
    path = tmp_path / "console.yaml"
    path.write_text(_console_yaml(), encoding="utf-8")
    environ = {k: str(v) for k, v in _secret()["stringData"].items()}
    config = load_config(path, environ=environ)
    assert config.sandbox.enabled is False
    assert [p.name for p in config.plants] == ["Old Plant", "HiTech Plant"]
    for plant in config.plants:
        assert plant.broker.tls is True
        assert plant.broker.verify is True
        assert plant.broker.password is not None
    stores = config.stores
    assert stores.postgres.dsn is not None
    assert "@timescaledb:5432/" in stores.postgres.dsn.get_secret_value()
    assert stores.influx.url == "http://influxdb:8086"
    assert stores.neo4j.uri == "bolt://neo4j:7687"
    assert stores.s3.endpoint == "minio:9000"
    # Every secret is a ${VAR}: the loader's own literal-secret check finds none.
    path.chmod(0o644)
    assert secrets_permission_warning(path) is None
    # Without the Secret's values the loader refuses it, naming the variable.
    with pytest.raises(ConfigError, match="TWINZO_CLIENT"):
        load_config(path, environ={})


def test_every_variable_the_config_needs_is_provided() -> None:
    needed = {m.group(1) for m in _VAR_REF.finditer(_console_yaml()) if m.group(2) is None}
    assert needed
    assert needed <= set(_secret()["stringData"])
    assert needed <= set(_env_file(DEPLOY / "systemd" / "dtp-console.env"))
    # And the ConfigMap itself holds no literal secret.
    assert "change-me" not in _console_yaml()


def test_the_stores_are_reachable_from_the_console_only() -> None:
    (policy,) = _objects("NetworkPolicy")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    for store in _objects("StatefulSet"):
        assert selected.items() <= store["spec"]["template"]["metadata"]["labels"].items()
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    console_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= console_labels.items()
