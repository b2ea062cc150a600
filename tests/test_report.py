"""weightgen.report: MLflow runs → comparison tables, plots, markdown and HTML (a temp MLflow store, no Prefect)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from weightgen.report import ReportError, build_report, comparison_plot, comparison_tables, select_runs


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTGEN_MLRUNS", str(tmp_path / "mlruns"))
    from weightgen.tracking import stage_run

    ids = {}
    for name, latent_dim, fidelity in (("enc-a", 8, 0.9), ("enc-b", 16, 0.95)):
        with stage_run("encoder", run_name=name, params={"latent_dim": latent_dim, "patch_size": 32},
                       tags={"weightgen.pipeline_flow_run_id": "pipe-1" if name == "enc-a" else "pipe-2"}) as run:
            mlflow.log_metric("acc_kept_median", fidelity)
            for step, loss in enumerate([1.0, 0.5, 0.25]):
                mlflow.log_metric("loss", loss * latent_dim / 8, step=step)
            ids[name] = run.info.run_id
    with stage_run("dit", run_name="dit-tiny", params={"steps": 4},
                   tags={"weightgen.pipeline_flow_run_id": "pipe-1"}) as run:
        mlflow.log_metric("sample_acc_median", 0.3)
        ids["dit"] = run.info.run_id
    return ids


def test_tables_put_runs_side_by_side_and_split_shared_from_differing_settings(store):
    runs = select_runs(experiments=["encoder"])  # the stage name works as well as "weightgen-encoder"
    assert sorted(runs["tags.mlflow.runName"]) == ["enc-a", "enc-b"]
    tables = comparison_tables(runs)
    assert list(tables["metrics"].columns) == ["enc-a", "enc-b"]
    assert tables["metrics"].loc["acc_kept_median"].tolist() == [0.9, 0.95]
    assert tables["metrics"].loc["loss"].tolist() == [0.25, 0.5]  # the latest value of a history
    assert tables["params"].index.tolist() == ["latent_dim"] and tables["params"].loc["latent_dim"].tolist() == ["8", "16"]
    assert tables["shared"].set_index("param").loc["patch_size", "value"] == "32"
    only_acc = comparison_tables(runs, metrics=["acc_*"])["metrics"]
    assert only_acc.index.tolist() == ["acc_kept_median"]


def test_build_report_writes_markdown_html_csv_and_plots_for_a_pipeline_across_experiments(store, tmp_path):
    path = build_report(pipeline="pipe-1", out_dir=tmp_path / "report")
    out = path.parent
    text = path.read_text()
    assert path.name == "report.md" and "2 runs selected by pipeline flow run pipe-1" in text
    assert "| acc_kept_median | 0.9 |" in text and "| sample_acc_median |  | 0.3 |" in text
    assert "enc-b" not in text  # another pipeline's run is not selected
    html = (out / "report.html").read_text()
    assert "<table" in html and "sample_acc_median" in html and 'src="metrics.png"' in html
    assert set(pd.read_csv(out / "runs.csv")["run_id"]) == {store["enc-a"], store["dit"]}
    for name in ("metrics.png", "history.png"):  # the loss was logged at three steps
        assert (out / name).stat().st_size > 1000


def test_explicit_run_ids_and_a_filter_select_exactly_those_runs(store, tmp_path):
    runs = select_runs(run_ids=[store["enc-b"], store["dit"]])
    assert set(runs["run_id"]) == {store["enc-b"], store["dit"]}
    assert set(runs["experiment"]) == {"weightgen-encoder", "weightgen-dit"}
    filtered = select_runs(experiments=["weightgen-encoder"], filter_string="metrics.acc_kept_median > 0.92")
    assert filtered["run_id"].tolist() == [store["enc-b"]]
    path = build_report(run_ids=[store["dit"]], out_dir=tmp_path / "one")
    assert not (path.parent / "history.png").exists()  # nothing was logged at several steps


def test_bad_selections_are_refused(store, tmp_path):
    with pytest.raises(ReportError, match="give run ids"):
        build_report(out_dir=tmp_path)
    with pytest.raises(ReportError, match="no MLflow experiment named 'nope'"):
        select_runs(experiments=["nope"])
    with pytest.raises(ReportError, match="no MLflow run 'deadbeef'"):
        select_runs(run_ids=["deadbeef"])
    with pytest.raises(ReportError, match="matches no MLflow run"):
        select_runs(pipeline="no-such-pipeline")


def test_comparison_plot_from_a_regression_table(tmp_path):
    from weightgen.regression import compare, load_baseline

    baseline = load_baseline({"metrics": {"a": {"baseline": 1.0, "abs_tol": 0.1},
                                          "b": {"baseline": 10.0, "higher_is_better": False, "rel_tol": 0.5}}})
    path = comparison_plot(compare({"a": 0.5}, baseline).table, tmp_path / "cmp.png")
    assert path.stat().st_size > 1000
