"""The (architecture, task) pairs a distillation or a tune trains on (weightgen.pairs): width-scaled neighbours."""

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
