"""benchmarks/rebuild_generator.sh names its runs from its arguments: a dry run in an empty checkout prints every step."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rebuild_generator.sh"


def all_steps(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    (tmp_path / "benchmarks").mkdir(exist_ok=True)
    shutil.copy(SCRIPT, tmp_path / "benchmarks" / SCRIPT.name)  # in an empty tree every step's output is missing
    done = subprocess.run(["bash", f"benchmarks/{SCRIPT.name}", *args], cwd=tmp_path, env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin", **(env or {})},
                          capture_output=True, text=True, check=True)
    return [line.removeprefix("STEP: ") for line in done.stdout.splitlines() if line.startswith("STEP: ")]


def dry_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The printed steps that train, tune or distil a DiT."""
    return [step for step in all_steps(tmp_path, *args, env=env) if "weightgen dit" in step]


def fake_teacher(tmp_path: Path, name: str, steps: int) -> None:
    """A finished diffusion stage as dit train leaves it: a model and a config naming its steps."""
    dit = tmp_path / "runs" / name / "dit"
    dit.mkdir(parents=True)
    (dit / "model.safetensors").write_bytes(b"")
    (dit / "config.json").write_text(f'{{"train": {{"steps": {steps}, "warmup_steps": 0}}}}')


def out_of(step: str) -> str:
    """The run a printed step writes (its --out)."""
    return step.split(" --out ")[-1].split()[0]


def test_default_teacher_and_student_keep_their_names(tmp_path):
    steps = dry_run(tmp_path, "shared")
    assert [out_of(s) for s in steps[1:]] == [
        "runs/sp-S-bp", "runs/sp-S-wide-la50", "runs/sp-xsp-k100-s3", "runs/sp-xsp-k100-s3-lr1e-4-ts"]
    assert "--preset S " in steps[0] and "--teacher runs/sp-S-wide-la50 " in steps[3] and "--preset XS " in steps[3]


def test_expert_teacher_and_student_get_their_own_runs(tmp_path):
    steps = dry_run(tmp_path, "shared", "4", "XS-E8", "S-E8")
    assert "--run runs/sp-SE8 " in steps[0] and "--preset S-E8 " in steps[0]
    assert "--teacher runs/sp-SE8-wide-la50 " in steps[3] and "--preset XS-E8 " in steps[3] and "--seed 4 " in steps[3]
    assert out_of(steps[4]) == "runs/sp-SE8t-xspE8-k100-s4-lr1e-4-ts"


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        dry_run(tmp_path, "wide")
    assert "usage:" in refused.value.stderr


def test_longer_teacher_stages_tag_the_teacher_and_student_runs(tmp_path):
    steps = dry_run(tmp_path, "shared", "3", "XS-E8", "S-E8", env={"TEACHER_STEPS": "2000", "TEACHER_TUNE_STEPS": "500"})
    assert "--run runs/sp-SE8-d2000 " in steps[0] and "--steps 2000 " in steps[0]
    assert out_of(steps[2]) == "runs/sp-SE8-d2000-wide-la50-t500" and "--steps 500 " in steps[2]
    assert "--teacher runs/sp-SE8-d2000-wide-la50-t500 " in steps[3]
    assert out_of(steps[3]) == "runs/sp-SE8d2000t500-xspE8-k100-s3"
    tune_only = dry_run(tmp_path, "shared", "3", "XS-E8", "S-E8", env={"TEACHER_TUNE_STEPS": "500"})
    assert "--run runs/sp-SE8 " in tune_only[0] and "--steps 500 " in tune_only[0]
    assert out_of(tune_only[3]) == "runs/sp-SE8t500-xspE8-k100-s3"


def test_longer_teacher_resumes_from_the_longest_shorter_one(tmp_path):
    for name, steps in [("sp-SE8", 500), ("sp-SE8-d2000", 2000), ("sp-SE8-d2000-bp", 2000), ("sp-SE8-d9000", 9000)]:
        fake_teacher(tmp_path, name, steps)
    steps = all_steps(tmp_path, "shared", "3", "XS-E8", "S-E8", env={"TEACHER_STEPS": "5000"})
    assert "cp -r runs/sp-SE8-d2000 runs/sp-SE8-d5000" in steps   # not the -bp tune, nor the longer d9000
    assert "cp -r runs/sp-tiny runs/sp-SE8-d5000" not in steps
    assert any(step.startswith(".venv/bin/weightgen dit train --run runs/sp-SE8-d5000 ") for step in steps)


def test_a_copied_teacher_is_not_mistaken_for_a_finished_one(tmp_path):
    fake_teacher(tmp_path, "sp-SE8-d5000", 2000)   # a copy of d2000 whose resumed training was interrupted
    (tmp_path / "runs" / "sp-SE8-d5000" / "dit" / "checkpoints").mkdir()
    steps = all_steps(tmp_path, "shared", "3", "XS-E8", "S-E8", env={"TEACHER_STEPS": "5000"})
    assert not any(step.startswith(("cp ", "rm ")) and "sp-SE8-d5000" in step for step in steps)   # its checkpoints are kept
    assert any(step.startswith(".venv/bin/weightgen dit train --run runs/sp-SE8-d5000 --corpus corpus/default ") for step in steps)
    fake_teacher(tmp_path, "sp-SE8-d8000", 8000)
    assert not any("dit train --run runs/sp-SE8-d8000 " in step for step in
                   dry_run(tmp_path, "shared", "3", "XS-E8", "S-E8", env={"TEACHER_STEPS": "8000"}))   # finished: skipped


def test_target_steps_reach_the_distillation_and_name_the_student(tmp_path):
    env = {"TEACHER_STEPS": "2000", "TEACHER_TUNE_STEPS": "500", "TARGET_STEPS": "300"}
    steps = dry_run(tmp_path, "shared", "3", "XS-E8", "S-E8", env=env)
    assert "--target-steps 300 " in steps[3] and out_of(steps[3]) == "runs/sp-SE8d2000t500-xspE8-k300-s3"
    assert out_of(steps[4]) == "runs/sp-SE8d2000t500-xspE8-k300-s3-lr1e-4-ts"
    assert "--target-steps 100 " in dry_run(tmp_path, "shared")[3]   # unset: the 100 of every earlier stop
