"""End to end with real servers on loopback: Prefect server + MLflow server + a process worker.

Deploys from prefect.yaml (`prefect --no-prompt deploy --all`), triggers deployment runs through the
REST endpoint the UI uses (`POST /api/deployments/<id>/create_flow_run`), waits for them, then reads
MLflow through its server. Both runs are triggered up front (the worker takes two at a time) so the
two tests share the wait. Everything lives in a temp folder; every process is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

GRID = {"name": "e2e", "seeds": [0], "checkpoint_steps": [20], "recipe": {"lr": 0.01, "batch_size": 64, "steps": 40, "eval_every": 20},
        "archs": ["mlp:hidden=16", "mlp:hidden=8x8"], "tasks": ["digits"]}
SUITE = {"name": "e2e", "seeds": [100], "recipe": {"lr": 0.01, "batch_size": 64, "steps": 40, "eval_every": 10},
         "methods": ["random", "generated"], "samples": 1, "ddim_steps": 5,
         "cases": [{"arch": "mlp:hidden=12", "task": "digits", "split": "unseen-arch"}]}
ENCODER = {"patch_size": 8, "latent_dim": 4, "steps": 20, "min_step": 0, "holdout": 0.25}
DIT = {"steps": 4, "batch_size": 4, "preset": "tiny", "checkpoint_every": 0, "eval_every": 0, "samples": 1}
TUNE = {"steps": 2, "lookahead_steps": 1, "inner_steps": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: dict | None = None, method: str | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
            return resp.status, (json.loads(text) if text.strip()[:1] in "[{" or text.strip() in ("true", "false") else text)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_until(check, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[:3]} exited with {proc.returncode}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    def restore_signals():  # a process started from a background job would ignore SIGINT (ENVIRONMENT.md)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    handle = log.open("w")
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=restore_signals)


def _stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)  # its own session: the whole group (flow-run subprocesses included)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
    try:  # children left in the group after the leader exited
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    prefect_port, mlflow_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("WEIGHTGEN_MLRUNS", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update({"PREFECT_HOME": str(root / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PWD": str(ROOT),
                "PREFECT_UI_ENABLED": "false", "PREFECT_API_SERVICES_SCHEDULER_ENABLED": "false",  # no pre-made nightly runs
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                            env, root / "prefect-server.log"))
        procs.append(_start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "mlartifacts")], env, root / "mlflow-server.log"))
        api, mlflow_uri = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
        _wait_until(lambda: _request(f"{api}/health") == (200, True), 90, "prefect server", procs)
        _wait_until(lambda: _request(f"{mlflow_uri}/health")[0] == 200, 90, "mlflow server", procs)
        env.update({"PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": mlflow_uri})
        for args in (["work-pool", "create", "--type", "process", "weightgen"], ["--no-prompt", "deploy", "--all"]):
            done = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        procs.append(_start([str(BIN / "prefect"), "worker", "start", "--pool", "weightgen", "--limit", "2"], env,
                            root / "worker.log"))
        yield SimpleNamespace(root=root, api=api, mlflow_uri=mlflow_uri, procs=procs)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for proc in procs:
            assert proc.poll() is not None, f"{proc.args[:3]} still running"


def _deployment_id(api: str, flow: str, name: str) -> str:
    status, body = _request(f"{api}/deployments/name/{flow}/{name}")
    assert status == 200, body
    return body["id"]


def _trigger(api: str, deployment_id: str, parameters: dict) -> tuple[int, object]:
    """What the UI's Run button sends."""
    return _request(f"{api}/deployments/{deployment_id}/create_flow_run",
                    {"parameters": parameters, "state": {"type": "SCHEDULED", "message": "Run from the e2e test"}})


@pytest.fixture(scope="module")
def triggered(servers):
    root = servers.root
    (root / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    failing = {"measured": {"command": "made to fail by tests/test_e2e_servers.py"},
               "settings": {"grid": str(root / "grid.yaml"), "encoder": ENCODER, "dit": DIT, "tune": TUNE},
               "metrics": {"encoder/acc_kept_median": {"baseline": 10.0},  # a network cannot keep 10x its accuracy
                           "nightly/wall_time_s": {"baseline": 0.001, "higher_is_better": False},
                           "evaluate/reach_rate/unseen-arch/random": {"baseline": 0.0}}}  # always holds
    (root / "failing.yaml").write_text(yaml.safe_dump(failing))
    pipeline = {"name": "e2e", "corpus_dir": str(root / "corpus"), "run_dir": str(root / "run"),
                "corpus": {"grid": str(root / "grid.yaml"), "workers": 1}, "encoder": ENCODER, "dit": DIT, "tune": TUNE,
                "evaluate": {"suite": str(root / "suite.yaml"), "workers": 1}}
    nightly = {"baseline": str(root / "failing.yaml"), "work_dir": str(root / "nightly"), "suite": str(root / "suite.yaml"),
               "workers": 1}
    runs = {}
    for flow, name, parameters in (("pipeline", "pipeline", pipeline), ("nightly", "nightly", nightly)):
        status, body = _trigger(servers.api, _deployment_id(servers.api, flow, name), parameters)
        assert status == 201, body
        runs[name] = body["id"]
    return SimpleNamespace(runs=runs, started=time.monotonic())


def _wait_for(servers, flow_run_id: str, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, run = _request(f"{servers.api}/flow_runs/{flow_run_id}")
        assert status == 200, run
        if run["state"]["type"] in TERMINAL:
            return run
        assert servers.procs[-1].poll() is None, (servers.root / "worker.log").read_text()[-3000:]
        time.sleep(2)
    raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout}s:\n" + (servers.root / "worker.log").read_text()[-3000:])


def test_pipeline_deployment_run_from_the_api_lands_in_mlflow(servers, triggered):
    import mlflow

    # A bad parameter is refused by the server before a flow run exists.
    pipeline_id = _deployment_id(servers.api, "pipeline", "pipeline")
    status, body = _trigger(servers.api, pipeline_id, {"corpus": {"workers": 0}})
    assert status in (409, 422) and "workers" in str(body), (status, body)
    status, schedules = _request(f"{servers.api}/deployments/{_deployment_id(servers.api, 'nightly', 'nightly')}/schedules")
    assert status == 200 and [s["schedule"]["cron"] for s in schedules] == ["0 2 * * *"]

    run = _wait_for(servers, triggered.runs["pipeline"])
    assert run["state"]["type"] == "COMPLETED", (run["state"], (servers.root / "worker.log").read_text()[-4000:])
    assert run["name"] == "pipeline-e2e"  # templated flow-run name
    flow_run_id = triggered.runs["pipeline"]

    client = mlflow.MlflowClient(servers.mlflow_uri)
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    (pipeline_run,) = client.search_runs([experiments["weightgen-pipeline"]], f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    assert pipeline_run.info.run_name == "pipeline-e2e" and pipeline_run.info.status == "FINISHED"
    assert pipeline_run.data.params["encoder.steps"] == "20" and pipeline_run.data.params["dit.preset"] == "tiny"
    metrics = pipeline_run.data.metrics
    assert metrics["corpus/corpus_members"] == 2 and 0 <= metrics["encoder/acc_kept_median"] <= 2
    assert 0 <= metrics["evaluate/reach_rate/unseen-arch/generated"] <= 1 and metrics["pipeline/wall_time_s"] > 0

    linked = client.search_runs(list(experiments.values()), f"tags.`weightgen.pipeline_flow_run_id` = '{flow_run_id}'")
    by_stage = {}
    for r in linked:  # a tune logs into the dit experiment, told apart by its kind
        stage = "tune" if r.data.tags.get("weightgen.kind") == "tune" else r.data.tags.get("weightgen.stage")
        by_stage.setdefault(stage, []).append(r)
    assert {"pipeline", "corpus", "encoder", "dit", "tune", "bench"} <= set(by_stage)
    tune_runs = by_stage["tune"]  # the recipe's two phases, each its own subflow and MLflow run
    assert len(tune_runs) == 2 and set(pipeline_run.data.tags["weightgen.run.tune"].split(",")) == {r.info.run_id for r in tune_runs}
    for stage in ("corpus", "encoder", "dit"):
        (stage_run,) = by_stage[stage]
        assert stage_run.info.run_name and pipeline_run.data.tags[f"weightgen.run.{stage}"] == stage_run.info.run_id
        assert stage_run.data.tags["weightgen.pipeline_run_id"] == pipeline_run.info.run_id
    (dit_run,) = by_stage["dit"]
    assert dit_run.data.params["steps"] == "4" and "loss" in dit_run.data.metrics
    assert dit_run.data.tags["prefect.root_flow_run_id"] == flow_run_id
    (encoder_run,) = by_stage["encoder"]
    assert encoder_run.data.params["latent_dim"] == "4" and "acc_kept_median" in encoder_run.data.metrics
    for model, stage_run in (("weightgen-encoder", encoder_run), ("weightgen-dit", dit_run)):
        versions = client.search_model_versions(f"name = '{model}'")
        assert stage_run.info.run_id in {v.run_id for v in versions}, model


def test_nightly_against_a_failing_baseline_ends_failed_naming_each_metric(servers, triggered):
    import mlflow

    run = _wait_for(servers, triggered.runs["nightly"])
    message = run["state"]["message"] or ""
    assert run["state"]["type"] == "FAILED", (run["state"], (servers.root / "worker.log").read_text()[-4000:])
    assert message.startswith("regression in 2 metrics: "), message
    assert "encoder/acc_kept_median" in message and "< limit 10 (baseline 10)" in message
    assert "nightly/wall_time_s" in message and "reach_rate" not in message
    assert run["name"].startswith("nightly-")

    client = mlflow.MlflowClient(servers.mlflow_uri)
    experiment = client.get_experiment_by_name("weightgen-nightly")
    (nightly_run,) = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{triggered.runs['nightly']}'")
    tags = nightly_run.data.tags
    assert tags["weightgen.status"] == "regressed"
    assert tags["weightgen.regressed"] == "encoder/acc_kept_median,nightly/wall_time_s"
    assert nightly_run.data.metrics["regressed_metrics"] == 2
    assert {a.path for a in client.list_artifacts(nightly_run.info.run_id)} >= {
        "comparison.csv", "comparison.md", "comparison.html", "comparison.png"}
    table = Path(mlflow.artifacts.download_artifacts(run_id=nightly_run.info.run_id, artifact_path="comparison.csv",
                                                     tracking_uri=servers.mlflow_uri)).read_text()
    assert table.count("\n") == 4 and "evaluate/reach_rate/unseen-arch/random" in table  # header + the 3 metrics
