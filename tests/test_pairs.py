"""The (architecture, task) pairs a distillation or a tune trains on (weightgen.pairs): width-scaled and task neighbours."""

from __future__ import annotations


def test_neighbours_scale_a_family_s_widths_and_never_draw_an_excluded_or_given_architecture():
    from weightgen.pairs import neighbour_pairs
    from weightgen.specs import parse_arch

    given = [("mlp:hidden=64x64", "mnist1d"), ("cnn2d:channels=8x16", "digits"), ("transformer:patch=8", "digits"),
             ("cnn1d:channels=32x32x32", "mnist1d")]
    drawn = neighbour_pairs(given, 6, exclude={"mlp:hidden=48x48"}, seed=3)
    assert drawn == neighbour_pairs(given, 6, exclude={"mlp:hidden=48x48"}, seed=3)  # seeded
    assert drawn != neighbour_pairs(given, 6, exclude={"mlp:hidden=48x48"}, seed=4)
    assert len(drawn) == 24 and len(set(drawn)) == 24 and not set(drawn) & set(given)
    for (arch, task), (source, source_task) in zip(drawn, [g for g in given for _ in range(6)]):
        spec, origin = parse_arch(arch), parse_arch(source)
        assert task == source_task and spec.family == origin.family
        if spec.family == "transformer":
            assert spec.dim % spec.heads == 0 and (spec.depth, spec.patch) == (origin.depth, origin.patch)
        else:  # one factor for every layer: the same depth, the same ratios (up to rounding)
            widths, old = (s.hidden if s.family == "mlp" else s.channels for s in (spec, origin))
            assert len(widths) == len(old) and all(0.5 * o - 1 <= w <= 2 * o + 1 for w, o in zip(widths, old))
    # An excluded architecture is drawn again: with the range pinned to it, nothing else is possible.
    assert neighbour_pairs([("mlp:hidden=32", "digits")], 3, exclude=set(), seed=0)
    many = neighbour_pairs([("mlp:hidden=32", "digits")], 40, exclude={f"mlp:hidden={w}" for w in range(16, 40)}, seed=0)
    assert all(not 16 <= parse_arch(a).hidden[0] < 40 for a, _ in many)


def test_task_neighbours_redraw_one_knob_and_never_draw_an_excluded_task_or_its_label_order():
    from weightgen.pairs import task_neighbour_pairs
    from weightgen.specs import parse_task

    given = [("mlp:hidden=64x64", "mnist1d"), ("cnn2d:channels=8x16", "digits:rot90=1"),
             ("transformer:patch=8", "digits:label_perm=1"), ("cnn1d:channels=32x32", "mnist1d:template_seed=1")]
    exclude = ["mnist1d:template_seed=2", "mnist1d:label_perm=2", "digits:rot90=2", "digits:flip=true,rot90=1"]
    drawn = task_neighbour_pairs(given, 12, exclude, seed=3)
    assert drawn == task_neighbour_pairs(given, 12, exclude, seed=3)  # seeded
    assert drawn != task_neighbour_pairs(given, 12, exclude, seed=4)
    assert len(drawn) == 48 and len(set(drawn)) == 48 and not set(drawn) & set(given)
    for (arch, task), (source, source_task) in zip(drawn, [g for g in given for _ in range(12)]):
        spec, origin = parse_task(task), parse_task(source_task)
        assert arch == source and spec.dataset == origin.dataset and spec.to_string() == task  # canonical
        changed = {k for k, v in spec.model_dump().items() if v != getattr(origin, k)}
        assert changed and (changed <= {"rot90", "flip"} or len(changed) == 1), (source_task, task)
        # Never an excluded task, a task that contains one's settings, or an excluded label order or template set,
        # which is the same permutation (the same templates) in every dataset.
        assert spec.label_perm != 2 and getattr(spec, "template_seed", 0) != 2 and getattr(spec, "rot90", 0) != 2
        assert not (getattr(spec, "flip", False) and getattr(spec, "rot90", 0) == 1)
    # Every knob is drawn: label orders, template sets, orientations and noise all occur.
    tasks = [parse_task(t) for _, t in drawn]
    assert any(t.dataset == "mnist1d" and t.template_seed not in (0, 1) for t in tasks)
    assert any(t.dataset == "digits" and t.noise > 0 for t in tasks) and any(t.label_perm > 1 for t in tasks)
    assert any(t.dataset == "digits" and t.flip for t in tasks)
    # With every label order and noise level excluded, only the seven other orientations are left, and all are drawn.
    pinned = task_neighbour_pairs([("mlp:hidden=32", "digits")], 10, [f"digits:label_perm={v}" for v in range(1, 41)]
                                  + ["digits:noise=0.1", "digits:noise=0.2", "digits:noise=0.3"], seed=0)
    assert sorted((parse_task(t).rot90, parse_task(t).flip) for _, t in pinned) == sorted(
        (r, f) for r in range(4) for f in (False, True) if (r, f) != (0, False))


def test_an_excluded_task_is_matched_by_what_defines_it():
    from weightgen.pairs import excludes_task
    from weightgen.specs import parse_task

    excluded = [parse_task(t) for t in ("digits:rot90=2", "mnist1d:label_perm=5", "digits")]
    for task, refused in (("digits:rot90=2", True), ("digits:rot90=2,noise=0.1", True), ("digits:rot90=3", False),
                          ("digits:label_perm=5", True), ("mnist1d:label_perm=5,template_seed=3", True),
                          ("mnist1d:label_perm=6", False), ("digits", True), ("digits:noise=0.1", False),
                          ("mnist1d", False)):
        assert excludes_task(parse_task(task), excluded) is refused, task
