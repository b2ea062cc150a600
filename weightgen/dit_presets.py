"""The DiT sizes by name (``weightgen.dit.DiTConfig`` fields); torch-free, so the CLI's help can list them."""

DIT_PRESETS: dict[str, dict] = {
    "tiny": dict(dim=32, depth=2, heads=2, experts=0),
    "XS": dict(dim=64, depth=2, heads=2, experts=0),  # a distilled student's size (weightgen.dit_distill): ~1/8 of S per token
    "XS-E8": dict(dim=64, depth=2, heads=2, experts=8),  # XS's FLOPs per token, 8 feed-forwards' parameters
    "XS-E32": dict(dim=64, depth=2, heads=2, experts=32),  # XS's FLOPs per token, 32 feed-forwards' parameters
    "S": dict(dim=128, depth=4, heads=4, experts=0),
    "S-E8": dict(dim=128, depth=4, heads=4, experts=8),  # a teacher's size: S's FLOPs per token, 8 feed-forwards' parameters
    "M": dict(dim=256, depth=8, heads=8, experts=0),
}
