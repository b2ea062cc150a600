"""prefect.yaml stays in step with the flows it deploys."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[1]


def _deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _flow(entrypoint: str):
    module, function = entrypoint.split(":")
    return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), function)


def test_every_deployment_points_at_a_flow_and_its_parameters_are_valid():
    names = [d["name"] for d in _deployments()]
    assert {"corpus", "encoder", "dit", "tune", "distill", "evaluate", "pipeline", "nightly"} <= set(names) and len(names) == len(set(names))
    for deployment in _deployments():
        flow = _flow(deployment["entrypoint"])
        schema = parameter_schema(flow)
        parameters = deployment.get("parameters", {})
        unknown = set(parameters) - set(schema.properties)
        assert not unknown, f"{deployment['name']}: parameters {unknown} are not parameters of {flow.name}"
        flow.validate_parameters(parameters)  # values pass the flow's own pydantic constraints
        assert deployment["work_pool"]["name"] == "weightgen"
        assert deployment["work_pool"]["job_variables"]["env"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_nightly_runs_on_a_cron_schedule_and_its_files_exist():
    nightly = next(d for d in _deployments() if d["name"] == "nightly")
    (schedule,) = nightly["schedules"]
    assert schedule["cron"] == "0 2 * * *" and schedule["active"] and nightly["concurrency_limit"] == 1
    for key in ("baseline", "suite"):
        assert (ROOT / nightly["parameters"][key]).is_file()


def test_pipeline_parameters_are_a_form_with_constraints():
    from flows.pipeline import pipeline_flow

    schema = parameter_schema(pipeline_flow).model_dump_for_openapi()
    definitions = schema["definitions"]
    assert {"CorpusSettings", "EncoderSettings", "DiTSettings", "EvaluateSettings"} <= set(definitions)
    assert definitions["CorpusSettings"]["properties"]["workers"]["minimum"] == 1
    assert definitions["DiTSettings"]["properties"]["preset"]["enum"] == ["tiny", "XS", "XS-E8", "XS-E32", "S", "S-E8", "M"]
    assert definitions["EncoderSettings"]["properties"]["holdout"]["exclusiveMaximum"] == 1
    with pytest.raises(Exception, match="workers"):
        pipeline_flow.validate_parameters({"corpus": {"workers": 0}})
    with pytest.raises(Exception, match="typo"):
        pipeline_flow.validate_parameters({"dit": {"typo": 1}})  # a misspelt setting is refused, not ignored


def test_stage_flow_parameters_carry_their_constraints():
    """Prefect 3.9.1 ignores constraints on `x: int = Field(3, ge=1)` defaults; `Annotated[...] = 3` keeps them."""
    from flows.corpus import corpus_flow
    from flows.dit import dit_flow
    from flows.encoder import encoder_flow
    from flows.evaluate import evaluate_flow

    for flow, name, key, value in [(corpus_flow, "workers", "minimum", 1), (evaluate_flow, "workers", "minimum", 1),
                                   (encoder_flow, "holdout", "exclusiveMaximum", 1), (dit_flow, "preset", "pattern", "^(tiny|XS|XS-E8|XS-E32|S|S-E8|M)$")]:
        assert parameter_schema(flow).properties[name][key] == value, (flow.name, name)
    with pytest.raises(Exception, match="workers"):
        evaluate_flow.validate_parameters({"workers": 0})


def test_tune_parameters_are_refused_before_any_work():
    from flows.tune import tune_flow

    tune_flow.validate_parameters({"steps": 10, "inner_steps": 20, "rebalance": "logits"})
    for bad, field in (({"inner_steps": -1}, "inner_steps"), ({"rebalance": "weights"}, "rebalance"),
                       ({"bias_penalty": -1.0}, "bias_penalty"), ({"noise": "uniform"}, "noise"),
                       ({"neighbours": -1}, "neighbours"), ({"task_neighbours": -1}, "task_neighbours"),
                       ({"init_weight": -1.0}, "init_weight")):
        with pytest.raises(Exception, match=field):
            tune_flow.validate_parameters(bad)


def test_a_tune_config_survives_the_flows_parameters(monkeypatch):
    """What `weightgen dit tune` and the pipeline pass the tune flow is the config the flow tunes with."""
    import flows.tune
    from weightgen.dit_tune import TuneConfig

    class Reached(Exception):
        pass

    def tune_task(run_dir, corpus_dir, out_dir, cfg, processes):
        raise Reached(cfg)

    monkeypatch.setattr(flows.tune, "tune_task", tune_task)
    cfg = TuneConfig(steps=7, inner_steps=3, init_weight=0.0, neighbours=2, exclude_archs=["mlp:hidden=20", "mlp:hidden=30"],
                     task_neighbours=3, exclude_tasks=["digits:rot90=2", "mnist1d:label_perm=2"],
                     holdout_archs=["mlp:hidden=24x24"], distill=0.5, rebalance="logits", noise="fixed", eval_every=3,
                     families=["mlp", "transformer"], match_scales=True, fit_head=True, init_spectrum=True)
    with pytest.raises(Reached) as reached:
        flows.tune.tune_flow.fn(run_dir="r", corpus_dir="c", out_dir="o", **flows.tune.flow_parameters(cfg))
    assert reached.value.args[0] == cfg


def test_distill_parameters_are_refused_before_any_work():
    from flows.distill import distill_flow

    distill_flow.validate_parameters({"preset": "tiny", "steps": 10, "function_weight": 1.0})
    for bad, field in (({"preset": "XL"}, "preset"), ({"steps": 0}, "steps"), ({"function_weight": -1.0}, "function_weight")):
        with pytest.raises(Exception, match=field):
            distill_flow.validate_parameters(bad)
