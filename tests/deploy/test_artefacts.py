"""The deployment artefacts say what the relay needs: the image runs `relay` as a
numeric non-root user from a hashed lock; the chart probes the right endpoints, waits
out grace and drain, keeps pods through disruptions, scales, runs restricted, and
names the scrape jobs the alerts use; the compose stack wires the same.

No Kafka and no Docker: the chart is rendered with helm (`make test` installs it),
the compose file and the Dockerfile are parsed. The schema checks themselves are in
deploy/lint.sh.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "relay"
HELM = ROOT / ".cache" / "bin" / "helm"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
RELAY = ROOT / ".venv" / "bin" / "relay"
KUBE_VERSION = "1.37.0"
# The one writable path of a read-only root filesystem: a volume of the pod's own.
TMP = "/tmp"  # noqa: S108

ALL_ON = CHART / "ci" / "all-on-values.yaml"
EXISTING_SECRETS = CHART / "ci" / "existing-secrets-values.yaml"
VALUE_SETS = [None, ALL_ON, EXISTING_SECRETS]
JOBS = {"ingest": "relay-ingest", "forward": "relay-forward"}
SETTINGS = {env for env, _, _ in Settings.describe()}

Manifest = dict[str, Any]


# -- rendering ---------------------------------------------------------------------


def _helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"helm is not installed at {HELM}: run `make helm` (make test does)")
    command = [str(HELM), "template", "relay", str(CHART), "--kube-version", KUBE_VERSION]
    return subprocess.run([*command, *args], capture_output=True, text=True, check=False)


@functools.cache
def render(values: Path | None = None, *sets: str) -> tuple[Manifest, ...]:
    args = [] if values is None else ["--values", str(values)]
    for assignment in sets:
        args += ["--set", assignment]
    result = _helm_template(*args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] == kind]


def deployment(manifests: tuple[Manifest, ...], component: str) -> Manifest:
    (found,) = [
        doc
        for doc in of_kind(manifests, "Deployment")
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def container(manifests: tuple[Manifest, ...], component: str) -> Manifest:
    containers: list[Manifest] = deployment(manifests, component)["spec"]["template"]["spec"][
        "containers"
    ]
    (found,) = containers
    return found


def plain_env(container_spec: Manifest) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container_spec["env"] if "value" in item}


def port_number(container_spec: Manifest, name: str) -> int:
    numbers: list[int] = [p["containerPort"] for p in container_spec["ports"] if p["name"] == name]
    (number,) = numbers
    return number


def relay_command(container_spec: Manifest) -> list[str]:
    """The relay command line a container runs: its args after the image's
    ENTRYPOINT ["relay"], or what its shell wrapper execs."""
    if "command" in container_spec:
        script = container_spec["command"][-1]
        match = re.search(r"^\s*exec relay (.+)$", script, re.MULTILINE)
        assert match, f"a command override must end in `exec relay ...`: {script}"
        return match.group(1).split()
    args: list[str] = container_spec["args"]
    return args


def value_set_id(values: Path | None) -> str:
    return "default" if values is None else values.stem


def components(values: Path | None) -> Iterator[tuple[str, Manifest]]:
    manifests = render(values)
    for component in ("ingest", "forward"):
        yield component, container(manifests, component)


# -- the chart: what renders ----------------------------------------------------------


def test_default_values_render_deployments_services_pdbs_and_the_ingest_hpa() -> None:
    kinds = sorted(doc["kind"] for doc in render())
    assert kinds == [
        "Deployment",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
    ]


def test_every_optional_part_renders_when_on() -> None:
    kinds = {doc["kind"] for doc in render(ALL_ON)}
    assert {"Ingress", "ScaledObject", "TriggerAuthentication", "ServiceMonitor"} <= kinds
    assert len(of_kind(render(ALL_ON), "Secret")) == 4  # kafka, upstream, tenants, admin


def test_values_the_relay_would_refuse_fail_the_rendering() -> None:
    result = _helm_template("--set", "kafka.tls.caCert=PEM")  # a CA next to PLAINTEXT
    assert result.returncode != 0
    assert "kafka.securityProtocol=PLAINTEXT does not use TLS" in result.stderr
    result = _helm_template("--set", "kafka.securityProtocol=SASL_SSL")
    assert result.returncode != 0
    assert "kafka.sasl.username is required" in result.stderr


# -- probes, shutdown, disruption, scaling ----------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=value_set_id)
def test_probes_ask_the_right_endpoints_on_the_right_port(values: Path | None) -> None:
    for component, spec in components(values):
        env = plain_env(spec)
        if component == "ingest":
            admin = env.get("RELAY_ADMIN_PORT")
            expected_port = int(admin) if admin else int(env["RELAY_INGEST_PORT"])
        else:
            expected_port = int(env["RELAY_FORWARD_PORT"])
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            http_get = spec[probe]["httpGet"]
            assert http_get["path"] == path, (component, probe)
            assert port_number(spec, http_get["port"]) == expected_port, (component, probe)


@pytest.mark.parametrize("values", VALUE_SETS, ids=value_set_id)
def test_termination_grace_covers_prestop_grace_and_drain(values: Path | None) -> None:
    manifests = render(values)
    ingest_pod = deployment(manifests, "ingest")["spec"]["template"]["spec"]
    ingest = container(manifests, "ingest")
    env = plain_env(ingest)
    sleep, seconds = ingest["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    needed = int(seconds) + float(env["RELAY_SHUTDOWN_GRACE_S"])
    needed += float(env["RELAY_SHUTDOWN_TIMEOUT_S"])
    assert ingest_pod["terminationGracePeriodSeconds"] > needed

    forward_pod = deployment(manifests, "forward")["spec"]["template"]["spec"]
    drain = float(plain_env(container(manifests, "forward"))["RELAY_FORWARD_DRAIN_S"])
    assert forward_pod["terminationGracePeriodSeconds"] > drain

    for component in ("ingest", "forward"):
        strategy = deployment(manifests, component)["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, component


@pytest.mark.parametrize("values", VALUE_SETS, ids=value_set_id)
def test_a_pod_disruption_budget_covers_each_deployment(values: Path | None) -> None:
    manifests = render(values)
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for component in ("ingest", "forward"):
        pod_labels = deployment(manifests, component)["spec"]["template"]["metadata"]["labels"]
        matching = [
            budget
            for budget in budgets
            if budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert len(matching) == 1, component
        assert matching[0]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("values", [None, ALL_ON], ids=value_set_id)
def test_ingest_scales_on_cpu_and_requests_cpu(values: Path | None) -> None:
    manifests = render(values)
    (hpa,) = of_kind(manifests, "HorizontalPodAutoscaler")
    target = deployment(manifests, "ingest")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": target["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in target["spec"]  # the HPA owns the count
    assert hpa["spec"]["minReplicas"] >= 2
    for component in ("ingest", "forward"):
        requests = container(manifests, component)["resources"]["requests"]
        assert requests["cpu"], component
        assert requests["memory"], component


@pytest.mark.parametrize(
    ("sets", "workers", "processes"),
    [
        ((), "1", "10"),  # the HPA's maxReplicas, one process each
        (("ingest.workers=3",), "3", "30"),
        (
            ("ingest.workers=2", "ingest.autoscaling.enabled=false", "ingest.replicaCount=4"),
            "2",
            "8",
        ),
    ],
)
def test_forward_leaves_upstream_room_for_every_ingest_worker(
    sets: tuple[str, ...], workers: str, processes: str
) -> None:
    """Each worker makes its own RELAY_INGEST_UPSTREAM_RPS of upstream calls: forward
    reserves that for the most pods times the workers of each."""
    manifests = render(None, *sets)
    assert plain_env(container(manifests, "ingest"))["RELAY_INGEST_WORKERS"] == workers
    assert plain_env(container(manifests, "forward"))["RELAY_INGEST_MAX_PROCESSES"] == processes


def test_keda_scales_forward_on_the_consumer_groups_lag() -> None:
    manifests = render(ALL_ON)
    (scaled,) = of_kind(manifests, "ScaledObject")
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    forward = deployment(manifests, "forward")
    env = plain_env(container(manifests, "forward"))
    assert scaled["spec"]["scaleTargetRef"]["name"] == forward["metadata"]["name"]
    assert "replicas" not in forward["spec"]  # KEDA owns the count
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert metadata["bootstrapServers"] == env["RELAY_KAFKA_BOOTSTRAP"]
    assert metadata["consumerGroup"] == env["RELAY_CONSUMER_GROUP"]
    assert "topic" not in metadata  # the lag of every topic of the group
    assert int(metadata["lagThreshold"]) > 0
    assert env["RELAY_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert metadata["sasl"] == "scram_sha512"
    assert metadata["tls"] == "enable"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    parameters = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert parameters == {"username", "password", "ca", "cert", "key"}
    secrets = {doc["metadata"]["name"] for doc in of_kind(manifests, "Secret")}
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} <= secrets


def test_the_ingress_exposes_only_the_event_port_with_tls() -> None:
    manifests = render(ALL_ON)
    (ingress,) = of_kind(manifests, "Ingress")
    ingest_service = next(
        doc
        for doc in of_kind(manifests, "Service")
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] == "ingest"
    )
    assert ingress["spec"]["tls"][0]["secretName"]
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == ingest_service["metadata"]["name"]
            assert backend["port"] == {"name": "http"}
    ports = {port["name"]: port["port"] for port in ingest_service["spec"]["ports"]}
    env = plain_env(container(manifests, "ingest"))
    assert ports["http"] == int(env["RELAY_INGEST_PORT"])
    assert ports["admin"] == int(env["RELAY_ADMIN_PORT"])  # metrics and health off it


# -- security -------------------------------------------------------------------------


def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    return int(users[-1].split(":")[0])


@pytest.mark.parametrize("values", VALUE_SETS, ids=value_set_id)
def test_pods_run_restricted_as_the_images_numeric_user(values: Path | None) -> None:
    manifests = render(values)
    for component in ("ingest", "forward"):
        pod = deployment(manifests, component)["spec"]["template"]["spec"]
        spec = container(manifests, component)
        for context in (pod["securityContext"], spec["securityContext"]):
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == dockerfile_uid()
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["automountServiceAccountToken"] is False
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        assert {"name": "tmp", "mountPath": TMP} in spec["volumeMounts"]


@pytest.mark.parametrize("values", [ALL_ON, EXISTING_SECRETS], ids=value_set_id)
def test_credentials_come_from_secrets_as_files_or_references(values: Path) -> None:
    manifests = render(values)
    made = {doc["metadata"]["name"] for doc in of_kind(manifests, "Secret")}
    existing = {"relay-kafka", "relay-upstream", "relay-tenants", "relay-admin"}
    known = made | existing if values == EXISTING_SECRETS else made
    for component in ("ingest", "forward"):
        pod = deployment(manifests, component)["spec"]["template"]["spec"]
        spec = container(manifests, component)
        secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        assert {v["secretName"] for v in secret_volumes.values()} <= known
        references = [
            item["valueFrom"]["secretKeyRef"]["name"]
            for item in spec["env"]
            if "secretKeyRef" in item.get("valueFrom", {})
        ]
        assert set(references) <= known
        assert "RELAY_UPSTREAM_TOKEN" in {item["name"] for item in spec["env"]}
        # Every *_FILE setting points into a mounted secret.
        mounts = [m["mountPath"] for m in spec["volumeMounts"] if m["name"] in secret_volumes]
        env = plain_env(spec)
        files = [value for name, value in env.items() if name.endswith("_FILE")]
        assert files
        for path in files:
            assert any(path.startswith(mount + "/") for mount in mounts), path
        # Nothing secret is written into the pod spec itself.
        for name in ("RELAY_KAFKA_PASSWORD", "RELAY_UPSTREAM_SECRET", "RELAY_ADMIN_TOKEN"):
            assert name not in env


@pytest.mark.parametrize("values", VALUE_SETS, ids=value_set_id)
def test_the_environment_is_made_of_real_settings_that_parse(values: Path | None) -> None:
    for _component, spec in components(values):
        names = {item["name"] for item in spec["env"]}
        relay_names = {name for name in names if name.startswith("RELAY_")}
        assert relay_names <= SETTINGS, relay_names - SETTINGS
        environ = dict.fromkeys(relay_names, "placeholder") | plain_env(spec)
        Settings.from_env(environ)


def test_ingest_raises_its_open_file_limit_without_privileges() -> None:
    spec = container(render(), "ingest")
    shell, flag, script = spec["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert 'ulimit -n "$(ulimit -H -n)"' in script
    assert script.rstrip().endswith("exec relay ingest")  # relay is PID 1, gets SIGTERM
    assert "privileged" not in spec["securityContext"]
    plain = container(render(EXISTING_SECRETS), "ingest")
    assert "command" not in plain
    assert plain["args"] == ["ingest"]


# -- metrics -----------------------------------------------------------------------------


def alert_jobs() -> set[str]:
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    return set(re.findall(r'job="([^"]+)"', text))


def test_service_monitors_scrape_the_jobs_the_alerts_use() -> None:
    manifests = render(ALL_ON)
    services = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in of_kind(manifests, "Service")
    }
    jobs = set()
    for monitor in of_kind(manifests, "ServiceMonitor"):
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        service = services[component]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        assert relabel["replacement"] == JOBS[component]
        jobs.add(relabel["replacement"])
    assert jobs == set(JOBS.values()) == alert_jobs()


# -- the image -----------------------------------------------------------------------------


def test_the_dockerfile_builds_one_pinned_non_root_relay_image() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE)
    assert len(froms) >= 3  # base, build, runtime
    base = froms[0][0]
    match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim(?:-\w+)?@sha256:[0-9a-f]{64}", base)
    assert match, f"the base image must be pinned by tag and digest: {base}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requires["requires-python"] == f">={match.group(1)}"
    assert all(image in {"base", "build"} for image, _ in froms[1:])

    entrypoints = re.findall(r"^ENTRYPOINT\s+(.+)$", text, re.MULTILINE)
    assert [json.loads(entry) for entry in entrypoints] == [["relay"]]  # exec form
    assert re.fullmatch(r"\d+:\d+", re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)[-1])
    assert dockerfile_uid() >= 10000
    runtime = text.split("AS runtime", 1)[1]
    assert "pip install" not in runtime  # nothing but the built virtualenv
    assert "--require-hashes" in text
    assert "-r requirements.lock" in text


def package_name(requirement: str) -> str:
    match = re.match(r"[\w.-]+", requirement)
    assert match, requirement
    return match.group(0).lower()


def test_the_lock_pins_every_runtime_dependency_with_hashes_and_no_dev_tool() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {name.lower() for name in re.findall(r"^([\w.-]+)==", lock, re.MULTILINE)}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert package_name(requirement) in pinned, requirement
    for dev in project["optional-dependencies"]["dev"]:
        assert package_name(dev) not in pinned, f"{dev} is a dev tool"
    for block in re.split(r"\n(?=[A-Za-z])", lock.split("\n", 2)[2]):
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list: nothing else reaches the build
    allowed = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    copied = set()
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE):
        copied |= set(line.split()[:-1])
    assert copied == allowed


def _relay_commands() -> set[tuple[str, ...]]:
    commands = set()
    for values in VALUE_SETS:
        for _component, spec in components(values):
            commands.add(tuple(relay_command(spec)))
    for service in yaml.safe_load(COMPOSE.read_text())["services"].values():
        if service.get("image") == "relay:local":
            commands.add(tuple(service["command"]))
    return commands


def test_the_images_entrypoint_runs_every_command_the_artefacts_give() -> None:
    commands = _relay_commands()
    assert commands == {("ingest",), ("forward",), ("sandbox",)}
    for command in commands:
        result = subprocess.run(
            [str(RELAY), *command, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (command, result.stderr)


# -- compose -----------------------------------------------------------------------------


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, duration
    return sum(float(number) * units[unit] for number, unit in parts)


@functools.cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def as_compose_gives(value: object) -> str:
    """A compose environment value as the process gets it with nothing set on the
    host: ``${NAME:-default}`` becomes its default, as compose interpolates it."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def compose_services(prefix: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if name.startswith(prefix)}


def test_compose_runs_a_three_node_kraft_cluster_of_the_official_image() -> None:
    nodes = compose_services("kafka-")
    assert len(nodes) == 3
    voters = set()
    for node in nodes.values():
        assert node["image"].startswith("apache/kafka:")
        env = node["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    (quorum,) = voters
    assert len(quorum.split(",")) == 3
    relay_env = compose_services("ingest-")["ingest-1"]["environment"]
    assert int(relay_env["RELAY_TOPIC_REPLICATION"]) == 3
    assert len(relay_env["RELAY_KAFKA_BOOTSTRAP"].split(",")) == 3


def test_compose_runs_two_of_each_process_and_the_sandbox_in_a_profile() -> None:
    ingests, forwards = compose_services("ingest-"), compose_services("forward-")
    assert len(ingests) == 2
    assert len(forwards) == 2
    sandbox = compose()["services"]["sandbox"]
    assert sandbox["profiles"] == ["sandbox"]
    for name, service in {**ingests, **forwards, "sandbox": sandbox}.items():
        assert service["image"] == "relay:local", name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert service["user"] == f"{dockerfile_uid()}:{dockerfile_uid()}", name
        assert service["read_only"] is True, name
        assert TMP in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert set(service["environment"]) <= SETTINGS, name
        Settings.from_env({k: as_compose_gives(v) for k, v in service["environment"].items()})
    for service in ingests.values():
        env = service["environment"]
        shutdown = float(env["RELAY_SHUTDOWN_GRACE_S"]) + float(env["RELAY_SHUTDOWN_TIMEOUT_S"])
        assert seconds(service["stop_grace_period"]) > shutdown
        assert service["ulimits"]["nofile"]["soft"] >= 65536
    for service in forwards.values():
        drain = float(service["environment"]["RELAY_FORWARD_DRAIN_S"])
        assert seconds(service["stop_grace_period"]) > drain


def test_compose_prometheus_scrapes_every_process_under_the_alerts_job_names() -> None:
    prometheus = compose()["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus/relay:ro" in prometheus["volumes"]
    (config,) = prometheus["configs"]
    assert f"--config.file={config['target']}" in prometheus["command"]
    content = yaml.safe_load(compose()["configs"][config["source"]]["content"])
    assert content["rule_files"] == ["/etc/prometheus/relay/alerts.yml"]
    jobs = {job["job_name"]: job for job in content["scrape_configs"]}
    assert set(jobs) == set(JOBS.values()) == alert_jobs()

    def targets(job: str) -> set[str]:
        return {t for group in jobs[job]["static_configs"] for t in group["targets"]}

    ingest_targets = {
        f"{name}:{service['environment']['RELAY_ADMIN_PORT']}"
        for name, service in compose_services("ingest-").items()
    }
    forward_targets = {
        f"{name}:{service['environment']['RELAY_FORWARD_PORT']}"
        for name, service in compose_services("forward-").items()
    }
    assert targets("relay-ingest") == ingest_targets
    assert targets("relay-forward") == forward_targets


def test_compose_grafana_is_provisioned_with_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "relay.yml").read_text()
    )
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/relay-dashboard.json"].startswith(dashboards_dir + "/")
    for source in mounts:
        assert (COMPOSE.parent / source).exists(), source
