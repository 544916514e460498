"""deploy/ stays deployable: manifests parse, agree with each other, and agree with the code.

No cluster, no docker, no network: these checks read the files. They catch what breaks a real
deployment late and silently: a RayJob whose --config path no ConfigMap provides, a container
without resource requests, a GPU group that asks for no GPU, a Ray version that differs from the
pin, a run config that `load_config` rejects, an image that runs as root.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

from rewardloop.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
CLUSTER_CONFIG = DEPLOY / "config" / "cluster.yaml"
README = (DEPLOY / "README.md").read_text()

EXPECTED_KINDS = {
    "raycluster.yaml": [("ray.io/v1", "RayCluster")],
    "rayjob.yaml": [("ray.io/v1", "RayJob")],
    "storage.yaml": [("v1", "PersistentVolumeClaim")],
    "feedback-gateway.yaml": [
        ("v1", "PersistentVolumeClaim"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
    ],
    "external-worker.yaml": [("v1", "Service"), ("apps/v1", "Deployment")],
}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one(path: Path, kind: str) -> dict:
    (found,) = [d for d in docs(path) if d["kind"] == kind]
    return found


RAYCLUSTER = one(KUBERAY / "raycluster.yaml", "RayCluster")
RAYJOB = one(KUBERAY / "rayjob.yaml", "RayJob")
GATEWAY = one(KUBERAY / "feedback-gateway.yaml", "Deployment")
EXTERNAL_WORKER = one(KUBERAY / "external-worker.yaml", "Deployment")
LEARNER_SERVICE = one(KUBERAY / "external-worker.yaml", "Service")


def ray_pod_specs(cluster_spec: dict) -> dict[str, dict]:
    """Pod specs of a RayClusterSpec by group name ('head' for the head group)."""
    pods = {"head": cluster_spec["headGroupSpec"]["template"]["spec"]}
    for group in cluster_spec["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def all_pod_specs() -> dict[str, dict]:
    pods = {f"raycluster/{k}": v for k, v in ray_pod_specs(RAYCLUSTER["spec"]).items()}
    pods.update(
        {f"rayjob/{k}": v for k, v in ray_pod_specs(RAYJOB["spec"]["rayClusterSpec"]).items()}
    )
    pods["rayjob/submitter"] = RAYJOB["spec"]["submitterPodTemplate"]["spec"]
    pods["feedback-gateway"] = GATEWAY["spec"]["template"]["spec"]
    pods["external-worker"] = EXTERNAL_WORKER["spec"]["template"]["spec"]
    return pods


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def mount_for(container: dict, pod: dict, path: str) -> tuple[dict, dict]:
    """The (volumeMount, volume) under which `path` lives in this container."""
    for mount in container.get("volumeMounts", []):
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            return mount, volume
    raise AssertionError(f"{container['name']}: nothing is mounted at {path}")


def ray_pin() -> str:
    (line,) = [
        ln for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln.startswith("ray==")
    ]
    return line.split("==")[1]


def entrypoint_args() -> tuple[str, list[str]]:
    """The RayJob entrypoint's --config path and its overrides (`--address A` is the override
    cluster.address=A, as the CLI applies it)."""
    argv = shlex.split(RAYJOB["spec"]["entrypoint"])
    assert argv[:2] == ["rewardloop", "train"], argv
    config = argv[argv.index("--config") + 1]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    if "--address" in argv:
        sets.append(f"cluster.address={argv[argv.index('--address') + 1]}")
    return config, sets


def run_config():
    """deploy/config/cluster.yaml as the RayJob's driver loads it (ConfigError = broken deploy)."""
    return load_config(CLUSTER_CONFIG, entrypoint_args()[1])


def test_every_yaml_parses_with_the_expected_kinds():
    for path in DEPLOY.rglob("*.yaml"):
        assert docs(path), f"{path} is empty"
    assert sorted(p.name for p in KUBERAY.glob("*.yaml")) == sorted(EXPECTED_KINDS)
    for name, kinds in EXPECTED_KINDS.items():
        assert [(d["apiVersion"], d["kind"]) for d in docs(KUBERAY / name)] == kinds


def test_ray_version_matches_the_pin_and_token_auth_is_on():
    for spec in (RAYCLUSTER["spec"], RAYJOB["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == ray_pin()
        assert spec["authOptions"]["mode"] == "token"


def test_rayjob_runs_the_same_cluster_as_raycluster():
    assert RAYJOB["spec"]["rayClusterSpec"] == RAYCLUSTER["spec"]
    assert RAYJOB["spec"]["shutdownAfterJobFinishes"] is True
    assert RAYJOB["spec"]["ttlSecondsAfterFinished"] > 0


def test_entrypoint_reads_a_config_that_the_configmap_provides():
    config_path, sets = entrypoint_args()
    assert "cluster.address=auto" in sets
    head = RAYJOB["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount, volume = mount_for(head["containers"][0], head, config_path)
    relative = str(PurePosixPath(config_path).relative_to(mount["mountPath"]))
    (item,) = [i for i in volume["configMap"]["items"] if i["path"] == relative]
    # The README's command creates that ConfigMap, under that key, from deploy/config/cluster.yaml.
    name, key = volume["configMap"]["name"], item["key"]
    command = f"kubectl create configmap {name} --from-file={key}=deploy/config/cluster.yaml"
    assert command in README
    assert README.index(command) < README.index("kubectl apply -f deploy/kuberay/rayjob.yaml")


def test_every_container_requests_cpu_and_memory():
    for where, pod in all_pod_specs().items():
        for c in containers(pod):
            requests, limits = c["resources"]["requests"], c["resources"].get("limits", {})
            assert {"cpu", "memory"} <= set(requests), f"{where}/{c['name']}"
            assert c.get("image"), f"{where}/{c['name']} has no image"
            # Extended resources (GPUs) must have requests equal to limits.
            for name in set(requests) | set(limits):
                if "/" in name:
                    assert requests.get(name) == limits.get(name), f"{where}/{c['name']}: {name}"
    autoscaler = RAYCLUSTER["spec"]["autoscalerOptions"]["resources"]["requests"]
    assert {"cpu", "memory"} <= set(autoscaler)


def test_gpu_group_asks_for_a_gpu_and_rollout_group_autoscales():
    spec = RAYCLUSTER["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    def gpus(group: dict) -> int:
        return sum(
            int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
            for c in group["template"]["spec"]["containers"]
        )

    gpu_groups = [g for g in spec["workerGroupSpecs"] if gpus(g) > 0]
    cpu_groups = [g for g in spec["workerGroupSpecs"] if gpus(g) == 0]
    assert len(gpu_groups) == 1 and gpus(gpu_groups[0]) == 1
    assert cpu_groups
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    assert any(g["maxReplicas"] > g["minReplicas"] for g in cpu_groups)


def test_ray_start_params_are_strings():
    spec = RAYCLUSTER["spec"]
    for params in [spec["headGroupSpec"]["rayStartParams"]] + [
        g["rayStartParams"] for g in spec["workerGroupSpecs"]
    ]:
        assert all(isinstance(v, str) for v in params.values()), params


def test_pods_run_as_non_root():
    for where, pod in all_pod_specs().items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, where


def test_run_directory_and_model_cache_are_on_the_shared_runs_volume():
    # The driver hands the model directory's path to actors on other pods, and loads the
    # checkpoint the learner wrote: both paths must be on one volume that every Ray pod mounts.
    cfg = run_config()
    (claim,) = docs(KUBERAY / "storage.yaml")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for group, pod in ray_pod_specs(RAYCLUSTER["spec"]).items():
        for path in (cfg.out, cfg.model.cache_dir):
            _, volume = mount_for(pod["containers"][0], pod, path)
            claim_name = volume["persistentVolumeClaim"]["claimName"]
            assert claim_name == claim["metadata"]["name"], f"{group}: {path}"


def test_cluster_config_loads_and_is_reachable_across_pods():
    cfg = run_config()
    assert cfg.cluster.address == "auto"
    # The learner asks Ray for a GPU, which only the GPU group offers.
    assert cfg.cluster.learner_gpus >= 1
    assert cfg.rollout.weight_sync == "object_store"
    # Rollout workers on other pods must reach the learner's TrajectoryService.
    assert cfg.learner.host == "0.0.0.0"
    gpu = [g for g in RAYCLUSTER["spec"]["workerGroupSpecs"] if "gpu" in g["groupName"]][0]
    ports = [p["containerPort"] for p in gpu["template"]["spec"]["containers"][0]["ports"]]
    assert cfg.learner.port in ports


def test_learner_token_comes_from_a_secret_on_the_driver_pod():
    token = run_config().learner.token
    assert token.startswith("env:"), "learner.token must be env:NAME, never the secret itself"
    name = token.removeprefix("env:")
    for spec in (RAYCLUSTER["spec"], RAYJOB["spec"]["rayClusterSpec"]):
        head = ray_pod_specs(spec)["head"]  # the driver runs there and ships the token on
        (env,) = [e for c in head["containers"] for e in c.get("env", []) if e["name"] == name]
        ref = env["valueFrom"]["secretKeyRef"]
        assert not ref.get("optional", False), "the driver cannot start without the token"
        assert f"kubectl create secret generic {ref['name']} --from-literal={ref['key']}=" in README


def manifest_configs() -> dict[str, list[str]]:
    """Every way a manifest loads cluster.yaml: its name -> the --set overrides it adds."""
    argv = GATEWAY["spec"]["template"]["spec"]["containers"][0]["command"]
    gateway = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return {"rayjob": entrypoint_args()[1], "feedback-gateway": gateway}


def test_no_manifest_binds_a_non_loopback_learner_without_a_token(monkeypatch):
    from rewardloop.auth import ServerSecurity, is_loopback

    for name, sets in manifest_configs().items():
        lc = load_config(CLUSTER_CONFIG, sets).learner
        if is_loopback(lc.host):
            continue
        assert lc.token and not lc.allow_insecure, f"{name}: learner on {lc.host} without a token"
        if lc.token.startswith("env:"):
            monkeypatch.setenv(lc.token.removeprefix("env:"), "from-the-secret")
        ServerSecurity.from_config(lc).check_bind(lc.host)  # what the learner checks at start


def test_feedback_gateway_keeps_one_sqlite_writer_on_its_volume():
    spec = GATEWAY["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    argv = container["command"]
    assert argv[:3] == ["rewardloop", "feedback", "serve"]
    sets = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--set")
    _, volume = mount_for(container, pod, sets["feedback.store_path"])
    claims = [
        d["metadata"]["name"]
        for d in docs(KUBERAY / "feedback-gateway.yaml")
        if d["kind"] == "PersistentVolumeClaim"
    ]
    assert volume["persistentVolumeClaim"]["claimName"] in claims
    # The bearer token comes from the Secret that the README tells you to create.
    (env,) = [e for e in container["env"] if e["name"] == "REWARDLOOP_FEEDBACK_TOKEN"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert f"kubectl create secret generic {ref['name']} --from-literal={ref['key']}=" in README
    # The Service selects the gateway pods and targets ports the container declares.
    service = one(KUBERAY / "feedback-gateway.yaml", "Service")
    labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_feedback_gateway_settings_are_config_keys_and_the_token_is_not_in_them():
    pod = GATEWAY["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container["command"]
    config_path = argv[argv.index("--config") + 1]
    _, volume = mount_for(container, pod, config_path)
    assert volume["configMap"]["name"] == "rewardloop-config"
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = load_config(CLUSTER_CONFIG, sets).feedback
    assert cfg.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (ports["grpc"], ports["http"]) == (cfg.grpc_port, cfg.http_port)
    assert pod["containers"][0]["readinessProbe"]["grpc"]["port"] == cfg.grpc_port
    # The token is read from an environment variable that a Secret fills.
    assert cfg.token.startswith("env:")
    names = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert cfg.token.removeprefix("env:") in names


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_pins_installs_and_runs_as_non_root():
    instructions = dockerfile_instructions()
    assert ("FROM", "python:3.11-slim") in instructions
    runs = " && ".join(rest for op, rest in instructions if op == "RUN")
    pip_installs = [c for c in re.split(r"&&|;|\bthen\b", runs) if "pip install" in c]
    project_installs = [c for c in pip_installs if '"pip==' not in c]
    assert project_installs
    for command in project_installs:
        assert "-c constraints.txt" in command, command
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(rest for op, rest in instructions if op == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "HOME=/home/" in env
    # KubeRay and the cluster launcher pass their own commands; an ENTRYPOINT would eat them.
    assert not [op for op, _ in instructions if op == "ENTRYPOINT"]
    # No Ray at build time: a local ray.init() would bake ~/.ray/auth_token into the image.
    assert "rewardloop train" not in runs and "ray start" not in runs


def test_dockerfile_prebuild_runs_a_real_cli_command():
    from rewardloop.cli import build_parser

    (run,) = [r for op, r in dockerfile_instructions() if op == "RUN" and "PREBUILD" in r]
    command = re.search(r"rewardloop ([\w ]+);", run).group(1).split()
    args = build_parser().parse_args(command)
    assert args.func.__name__ == "cmd_model_build"


def test_dockerfile_copies_every_package_directory():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {rest.split()[0].rstrip("/") for op, rest in dockerfile_instructions() if op == "COPY"}
    for directory in set(pyproject["tool"]["setuptools"]["package-dir"].values()):
        assert directory in copied, f"deploy/Dockerfile does not COPY {directory}/"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**/.venv" in ignored


def test_cluster_launcher_config_is_valid_for_ray():
    util = pytest.importorskip("ray.autoscaler._private.util")
    raw = yaml.safe_load((DEPLOY / "ray-cluster-launcher.yaml").read_text())
    util.validate_config(util.prepare_config(copy.deepcopy(raw)))
    types = raw["available_node_types"]
    assert types[raw["head_node_type"]]["resources"] == {"CPU": 0}
    # AWS GPU instance families are g* and p*.
    gpu_types = [t for t in types.values() if t["node_config"]["InstanceType"][0] in "gp"]
    assert len(gpu_types) == 1 and "cuda" in gpu_types[0]["docker"]["worker_image"]
    for command in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token ray start" in c for c in raw[command])
    assert "~/.ray/auth_token" in raw["file_mounts"]
    # The config path the README's `ray exec` uses is synced from deploy/config.
    config_path, _ = entrypoint_args()
    remote_dir = str(PurePosixPath(config_path).parent)
    local = ROOT / raw["file_mounts"][remote_dir] / PurePosixPath(config_path).name
    assert local == CLUSTER_CONFIG
    assert f"--config {config_path} --address auto" in README


def test_prometheus_scrapes_the_configured_metrics_ports():
    from rewardloop.auth import is_loopback

    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape.yaml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    keep = {  # job -> (the pod's component label, the container port's name) it keeps
        name: tuple(r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep")
        for name, job in jobs.items()
        if "relabel_configs" in job
    }
    lc = run_config().learner
    fb = load_config(CLUSTER_CONFIG, manifest_configs()["feedback-gateway"]).feedback
    pods = [
        (g["template"], "rewardloop-learner", lc) for g in RAYCLUSTER["spec"]["workerGroupSpecs"]
    ]
    pods.append((GATEWAY["spec"]["template"], "rewardloop-feedback-gateway", fb))
    for template, job, cfg in pods:
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        if job == "rewardloop-learner" and component != keep[job][0]:
            assert "metrics" not in ports, component  # only the learner's pods are scraped
            continue
        assert keep[job] == (component, "metrics")
        assert ports["metrics"] == cfg.metrics_port > 0, job
        assert not is_loopback(cfg.metrics_host), f"{job}: Prometheus scrapes from another pod"
    static = jobs["rewardloop-static"]["static_configs"][0]["targets"]
    assert {t.rsplit(":", 1)[1] for t in static} == {str(lc.metrics_port), str(fb.metrics_port)}
