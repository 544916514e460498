"""deploy/ uses the same entry points as the code: every `rewardloop` command in deploy/README.md
and the manifests parses with the real CLI parser, every key they set or name is a config key,
`ray job submit` is shown with `--address` and a small working dir, the external workers reach
the learner's Service with the token Secret, and the control endpoint stays on loopback.
File-reading checks only (no cluster); the manifests are parsed by test_deploy_manifests.py."""

from __future__ import annotations

import re
import shlex

import test_deploy_manifests as m

from rewardloop.config import load_config


def readme_commands(text: str, program: str, first: str = "[a-z]") -> list[list[str]]:
    """The argv after `program <subcommand>` on every line of the fenced shell blocks of `text`
    (continuation lines joined; the command ends at a pipe, `&` or `;`, or at the quote that
    closes a string it sits in, as in `ray exec ... 'rewardloop train ...'`)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.lstrip().startswith("#"):
                continue
            for match in re.finditer(rf"(?:^|[\s'(]){program}\s+(?={first})", line):
                commands.append(_argv(line[match.end() :].split(" #", 1)[0]))
    return commands


def _argv(rest: str) -> list[str]:
    lexer = shlex.shlex(rest, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # the command sits inside a quoted string: it ends at the quote
        tokens = shlex.split(re.split(r"['\"]", rest)[0])
    out = []
    for token in tokens:
        if set(token) <= set("|&;"):
            break
        out.append(token)
    return out


def manifest_commands() -> dict[str, list[str]]:
    """The rewardloop argv of every manifest (RayJob entrypoint, gateway, external worker)."""
    return {
        "rayjob": shlex.split(m.RAYJOB["spec"]["entrypoint"])[1:],
        "feedback-gateway": m.GATEWAY["spec"]["template"]["spec"]["containers"][0]["command"][1:],
        "external-worker": m.EXTERNAL_WORKER["spec"]["template"]["spec"]["containers"][0][
            "command"
        ][1:],
    }


def config_keys() -> set[str]:
    from rewardloop.config.reference import rows

    return {key for key, _, _ in rows()}


def test_every_rewardloop_command_of_deploy_parses_with_the_cli():
    from rewardloop.cli import build_parser

    parser = build_parser()
    commands = readme_commands(m.README, "rewardloop") + list(manifest_commands().values())
    used = set()
    for argv in commands:
        args = parser.parse_args(argv)  # SystemExit (a failed test) on an unknown command/flag
        assert getattr(args, "func", None), argv
        used.add(argv[0])
    # the entry points issue 11 names are all shown
    assert {"train", "worker", "scale", "stop", "status", "feedback"} <= used


def test_every_key_deploy_sets_is_a_config_key():
    keys = config_keys()
    sets = []
    for argv in readme_commands(m.README, "rewardloop") + list(manifest_commands().values()):
        sets += [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert sets
    for item in sets:
        key = item.split("=", 1)[0]
        assert key in keys, f"deploy/ sets {key}, which is not a config key"
    # the keys the prose names, e.g. `rollout.autoscale.max_workers` or `cluster.control_host`
    sections = {k.split(".")[0] for k in keys}
    pattern = r"`((?:" + "|".join(sorted(sections)) + r")\.[a-z_.]+)`"
    named = {k for k in re.findall(pattern, m.README) if not k.endswith((".yaml", "."))}
    unknown = [k for k in named if k not in keys and not any(x.startswith(k + ".") for x in keys)]
    assert not unknown, f"deploy/README.md names keys the config lacks: {unknown}"


def test_ray_job_submit_is_documented_with_address_and_a_small_working_dir():
    from rewardloop.cli import build_parser

    submits = readme_commands(m.README, "ray job submit", first="-")
    assert submits
    for argv in submits:
        assert "--address" in argv, argv
        entry = argv[argv.index("--") + 1 :]
        assert entry[:2] == ["rewardloop", "train"] and "--address" in entry, argv
        build_parser().parse_args(entry[1:])
    assert any("--working-dir" in argv for argv in submits)
    # the RayJob's entrypoint attaches the same way
    assert "--address" in shlex.split(m.RAYJOB["spec"]["entrypoint"])


def test_external_workers_reach_the_learner_service_with_the_token_secret():
    from rewardloop.cli import build_parser

    pod = m.EXTERNAL_WORKER["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container["command"]
    args = build_parser().parse_args(argv[1:])
    assert args.func.__name__ == "cmd_worker"
    cfg = load_config(m.CLUSTER_CONFIG, args.overrides)
    assert cfg.rollout.weight_sync == "grpc"
    assert cfg.learner.serve_weights and cfg.learner.weights_port
    # --learner / --weights name the Service and its ports, which are the learner's fixed ports
    service = m.LEARNER_SERVICE["metadata"]["name"]
    by_port = {p["port"]: p for p in m.LEARNER_SERVICE["spec"]["ports"]}
    assert args.learner == f"{service}:{cfg.learner.port}"
    assert args.weights == f"{service}:{cfg.learner.weights_port}"
    # the Service selects the learner's pods and targets ports they declare under those names
    gpu = [g for g in m.RAYCLUSTER["spec"]["workerGroupSpecs"] if "gpu" in g["groupName"]][0]
    labels = gpu["template"]["metadata"]["labels"]
    assert m.LEARNER_SERVICE["spec"]["selector"].items() <= labels.items()
    declared = {
        p["name"]: p["containerPort"] for p in gpu["template"]["spec"]["containers"][0]["ports"]
    }
    for port in (cfg.learner.port, cfg.learner.weights_port):
        assert declared[by_port[port]["targetPort"]] == port
    # the token: the variable learner.token names, from the Secret the README creates
    name = cfg.learner.token.removeprefix("env:")
    (env,) = [e for e in container["env"] if e["name"] == name]
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "rewardloop-learner-token" and not ref.get("optional", False)
    assert f"kubectl create secret generic {ref['name']} --from-literal={ref['key']}=" in m.README
    # its config and the default model's cache are mounted
    config_path = argv[argv.index("--config") + 1]
    _, volume = m.mount_for(container, pod, config_path)
    assert volume["configMap"]["name"] == "rewardloop-config"
    _, volume = m.mount_for(container, pod, cfg.model.cache_dir)
    assert volume["persistentVolumeClaim"]["claimName"] == "rewardloop-runs"
    assert "kubectl apply -f deploy/kuberay/external-worker.yaml" in m.README


def test_the_control_endpoint_stays_on_loopback_on_the_head():
    from rewardloop.auth import is_loopback

    cfg = m.run_config()
    assert is_loopback(cfg.cluster.control_host) and cfg.cluster.control_port != -1
    assert f"rewardloop scale {cfg.out} --workers" in m.README
