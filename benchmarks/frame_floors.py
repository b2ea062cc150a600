"""What would a generator write if it knew less than the member? Error and accuracy floors in a corpus, as a table.

A distilled student that writes members (``weightgen dit distill --target-start retrieval --target-steps 0``) is
scored by its patch error: ‖output − member‖ / ‖member‖ over the normalised patches (1 = writing zeros). This
script puts that number beside what simpler "generators" reach against the same members, on the same scale:

``other seed``      the member of the same architecture and task from the other training seed (a generator
                    that found the right task but not the seed);
``dataset soup``    the average of every member of the architecture on the dataset, all tasks and seeds (a
                    generator that knows the architecture and dataset, not the task);
``parent``          the family's shared parent on the dataset, fitted to the architecture by weight selection
                    (the frame's origin: what every member of the dataset fine-tuned from).

For each, the median patch error against the members and the median test accuracy it gives on the member's task.
Only meaningful on a corpus in one shared frame (averages of members from independent inits are at chance).

    .venv/bin/python benchmarks/frame_floors.py --corpus corpus/default
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from member_soup import mean_state  # benchmarks/ is on sys.path when run as a script
from weightgen.corpus import Corpus, final_checkpoints
from weightgen.data import input_shape
from weightgen.models import build_model
from weightgen.sampling import evaluate_state_dict, template
from weightgen.tune_target import patches_from_state
from weightgen.weight_selection import fit_state_dict


def floor_rows(corpus: Corpus, patch_size: int) -> pd.DataFrame:
    final = final_checkpoints(corpus.require_nonempty())
    final = final[final["family"] != "external"]
    states = {r.member: corpus.load(r.member, int(r.step))[0] for r in final.itertuples()}
    parent_of = {record["member"]: record.get("parent", "") for record in corpus.members()}  # not in the manifest
    parents = set(parent_of.values()) - {""}
    rows = []
    for (arch, dataset), group in final.groupby(["arch", "dataset"]):
        soup = mean_state([states[m] for m in group["member"]])
        for member in group.itertuples():
            if member.member in parents:  # the frame's origin itself: nothing to compare it with
                continue
            tokens = template(arch, member.task, patch_size)
            target = patches_from_state(tokens, states[member.member])

            def error(state: dict[str, torch.Tensor]) -> float:
                return float((patches_from_state(tokens, state) - target).norm() / target.norm().clamp(min=1e-12))

            others = group[(group["task"] == member.task) & (group["member"] != member.member)]["member"]
            guesses = {"dataset soup": soup}
            if len(others):
                guesses["other seed"] = states[others.iloc[0]]
            if parent := parent_of.get(member.member):
                skeleton = build_model(arch, input_shape(member.task), seed=0).state_dict()
                guesses["parent"] = fit_state_dict(states[parent], skeleton)[0]
            for name, state in guesses.items():
                rows.append({"family": member.family, "arch": arch, "task": member.task, "guess": name,
                             "error": error(state), "acc": evaluate_state_dict(state, arch, member.task),
                             "member_acc": member.test_acc})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--patch-size", type=int, default=32, help="the generator's patch size (the encoder's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = floor_rows(Corpus(args.corpus), args.patch_size)
    table = rows.groupby(["guess", "family"])[["error", "acc", "member_acc"]].median().unstack("guess")
    print(f"corpus {args.corpus}: median over members of each family (error: patch error against the member, "
          f"1 = zeros; acc: test accuracy on the member's task, no training)")
    print(table.to_string(float_format="%.3f"))
    overall = rows.groupby("guess")[["error", "acc", "member_acc"]].median()
    print("\nall members:\n" + overall.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
