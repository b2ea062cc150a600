"""The distillation's pieces that need no teacher: the error functions a student is trained by
(weightgen.dit_distill) and the patch layout a patch-writing student writes (weightgen.tune_target).

The distillation runs themselves are in test_distill.py.
"""

from __future__ import annotations

import torch


def test_patches_from_state_is_the_exact_inverse_of_the_patch_layout():
    from weightgen.data import input_shape
    from weightgen.encoder import valid_mask
    from weightgen.models import build_model
    from weightgen.sampling import template
    from weightgen.tune_target import differentiable_state_dict, patches_from_state

    for arch, task in [("mlp:hidden=16x12", "digits"), ("cnn1d:channels=8x8", "mnist1d"), ("cnn2d:channels=4x8", "digits"),
                       ("transformer:dim=16,depth=1,heads=2,patch=8", "digits")]:
        tokens = template(arch, task, 8)
        state = build_model(arch, input_shape(task), seed=3).state_dict()  # not the template's own seed-0 values
        values = patches_from_state(tokens, state)
        assert values.shape == tokens.patches.shape
        back = differentiable_state_dict(tokens, values)
        assert back.keys() == state.keys()
        assert all(torch.allclose(back[k].float(), state[k].float(), atol=1e-6) for k in state), arch
        padding = ~valid_mask(tokens.coords, 8).expand_as(values)  # every slot a row's columns never reach stays 0
        assert padding.any() and torch.all(values[padding] == 0), arch


def test_the_tensor_balanced_error_gives_each_tensor_its_relative_error_whatever_its_size():
    from weightgen.dit_distill import tensor_balanced_error

    g = torch.Generator().manual_seed(0)
    target = torch.randn(6, 4, generator=g)
    target[4:] *= 0.01  # tensor 2: a small bias, next to the O(1) matrix rows of tensors 0 and 1
    out = target + 0.1 * torch.randn(6, 4, generator=g)
    index = torch.tensor([0, 0, 0, 1, 2, 2])
    by_hand = torch.stack([(out[index == i] - target[index == i]).pow(2).sum() / target[index == i].pow(2).sum()
                           for i in range(3)]).mean()
    assert torch.allclose(tensor_balanced_error(out, target, index, floor=0.0), by_hand)
    # The small tensor's 0.1 error is 100x its size, and it dominates; the plain mean square barely sees it.
    assert tensor_balanced_error(out, target, index) > 10 * (out - target).pow(2).mean()
    # Scaling one tensor (its output and its target) leaves the error as it is: no tensor outweighs another by size.
    scaled_out, scaled_target = out.clone(), target.clone()
    scaled_out[index == 1] *= 50.0
    scaled_target[index == 1] *= 50.0
    assert torch.allclose(tensor_balanced_error(scaled_out, scaled_target, index, floor=0.0), by_hand)
    # An all-zero target tensor (a fresh bias) gives a finite error through the floor, and gradients reach the output.
    zero = target.clone()
    zero[3] = 0.0
    leaf = out.clone().requires_grad_(True)
    error = tensor_balanced_error(leaf, zero, index)
    error.backward()
    assert torch.isfinite(error) and torch.isfinite(leaf.grad).all() and leaf.grad[3].abs().sum() > 0
    assert tensor_balanced_error(target, target, index) == 0.0


def test_the_output_error_sums_a_network_as_its_weighting_says():
    from weightgen.dit_distill import output_error, tensor_balanced_error

    g = torch.Generator().manual_seed(1)
    target = torch.randn(1, 5, 4, generator=g)
    out = target + 0.3 * torch.randn(1, 5, 4, generator=g)
    coords = torch.zeros(5, 8, dtype=torch.long)
    coords[:, 0] = torch.tensor([0, 0, 1, 2, 3])  # tensors 0 and 2: matrices; 1 and 3: vectors (ndim 1)
    coords[:, 7] = torch.tensor([2, 2, 1, 2, 1])
    rows_out, rows_target = out[0], target[0]
    mean_square = (out - target).pow(2).mean()
    assert torch.equal(output_error(out, target, coords, "elements"), mean_square)
    assert torch.equal(output_error(out, target, coords, "tensors"), tensor_balanced_error(rows_out, rows_target, coords[:, 0]))
    vectors = torch.tensor([2, 4])
    expected = mean_square + tensor_balanced_error(rows_out[vectors], rows_target[vectors], coords[vectors, 0])
    assert torch.allclose(output_error(out, target, coords, "elements+vectors"), expected)
    # A network with no 1-D tensor has no vector term: the mean square, not a NaN from an empty mean.
    coords[:, 7] = 2
    assert torch.equal(output_error(out, target, coords, "elements+vectors"), mean_square)
