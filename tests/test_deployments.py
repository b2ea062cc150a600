"""prefect.yaml stays in step with the flows it deploys."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[1]


def test_every_deployment_points_at_a_flow_and_its_parameters_exist():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = [d["name"] for d in spec["deployments"]]
    assert {"corpus", "encoder", "dit"} <= set(names) and len(names) == len(set(names))
    for deployment in spec["deployments"]:
        module, function = deployment["entrypoint"].split(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), function)
        schema = parameter_schema(flow)
        unknown = set(deployment.get("parameters", {})) - set(schema.properties)
        assert not unknown, f"{deployment['name']}: parameters {unknown} are not parameters of {function}"
        assert deployment["work_pool"]["name"] == "weightgen"
