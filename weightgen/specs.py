"""Typed, validated specs: what network (ArchSpec), on what data (TaskSpec), trained how (Recipe).

Every spec has a canonical one-line string form, ``family:key=value,key=value`` (lists joined by
``x``), that round-trips through :func:`parse_arch` / :func:`parse_task`, and a dict form for YAML
and JSON files. A bad spec raises :class:`SpecError` naming the field, before any compute is spent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator


class SpecError(ValueError):
    """A spec string, dict or file that cannot be turned into a valid spec."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_string(self) -> str:
        """Canonical one-line form: the discriminator, then each non-default field in declaration order."""
        fields = type(self).model_fields
        head_field = next(iter(fields))
        parts = [
            f"{name}={_format_value(getattr(self, name))}"
            for name, info in fields.items()
            if name != head_field and getattr(self, name) != info.get_default(call_default_factory=True)
        ]
        head = getattr(self, head_field)
        return f"{head}:{','.join(parts)}" if parts else head

    @property
    def slug(self) -> str:
        """File-name-safe form of :meth:`to_string`."""
        return self.to_string().replace(":", "-").replace(",", "-").replace("=", "_")

    def __str__(self) -> str:
        return self.to_string()


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --------------------------------------------------------------------------- architectures
Width = Annotated[int, Field(ge=1, le=4096)]


def _as_list(value: Any) -> Any:
    """``hidden=64`` in a spec string means one layer of 64."""
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


def Widths(min_length: int, max_length: int):  # noqa: N802 - reads as a type in the specs below
    return Annotated[list[Width], BeforeValidator(_as_list), Field(min_length=min_length, max_length=max_length)]


class MLPSpec(_Spec):
    """Fully connected classifier: input → hidden widths (ReLU/GELU/tanh) → classes."""

    family: Literal["mlp"] = "mlp"
    hidden: Widths(0, 8) = [100, 100]
    activation: Literal["relu", "gelu", "tanh"] = "relu"


class CNN1dSpec(_Spec):
    """1-D convolutional classifier for sequences (MNIST-1D), after Greydanus (2020)."""

    family: Literal["cnn1d"] = "cnn1d"
    channels: Widths(1, 6) = [25, 25, 25]
    kernel: Annotated[int, Field(ge=1, le=15)] = 5
    stride: Annotated[int, Field(ge=1, le=3)] = 2
    norm: Literal["none", "batch"] = "none"


class CNN2dSpec(_Spec):
    """2-D convolutional classifier for small images (8×8 digits); 3×3 same-padding convolutions."""

    family: Literal["cnn2d"] = "cnn2d"
    channels: Widths(1, 6) = [16, 32]
    kernel: Annotated[int, Field(ge=1, le=7)] = 3
    norm: Literal["none", "batch"] = "none"


class TransformerSpec(_Spec):
    """Tiny encoder-only classifier: the input is cut into ``patch``-long tokens, mean-pooled head."""

    family: Literal["transformer"] = "transformer"
    dim: Annotated[int, Field(ge=4, le=1024)] = 32
    depth: Annotated[int, Field(ge=1, le=12)] = 2
    heads: Annotated[int, Field(ge=1, le=16)] = 4
    patch: Annotated[int, Field(ge=1, le=64)] = 4
    mlp_ratio: Annotated[int, Field(ge=1, le=8)] = 2

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "TransformerSpec":
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}")
        return self


ArchSpec = Annotated[Union[MLPSpec, CNN1dSpec, CNN2dSpec, TransformerSpec], Field(discriminator="family")]
FAMILIES = ("mlp", "cnn1d", "cnn2d", "transformer")


# --------------------------------------------------------------------------- tasks
Unit = Annotated[float, Field(ge=0.0, le=10.0)]


class MNIST1DTask(_Spec):
    """MNIST-1D generated locally by the ``mnist1d`` package; the knobs are its generation args.

    ``template_seed`` > 0 perturbs the ten class templates (a new "alphabet"); ``label_perm`` > 0
    permutes the class labels with that seed; ``seed`` drives sample generation and the splits.
    """

    dataset: Literal["mnist1d"] = "mnist1d"
    noise: Unit = 0.25  # correlated noise scale
    iid_noise: Unit = 0.02
    shift: Annotated[int, Field(ge=0, le=60)] = 48  # max translation
    scale: Unit = 0.4
    shear: Unit = 0.75
    template_seed: Annotated[int, Field(ge=0)] = 0
    label_perm: Annotated[int, Field(ge=0)] = 0
    samples: Annotated[int, Field(ge=100, le=100_000)] = 5000
    seed: Annotated[int, Field(ge=0)] = 42


class DigitsTask(_Spec):
    """scikit-learn's 8×8 digits (1,797 images) with variants of its own.

    ``noise`` adds Gaussian pixel noise (in units of the 0–1 pixel range, fixed per ``seed``),
    ``rot90`` rotates every image by that many quarter turns, ``flip`` mirrors left–right,
    ``label_perm`` > 0 permutes the class labels; ``seed`` drives the noise and the splits.
    """

    dataset: Literal["digits"] = "digits"
    noise: Unit = 0.0
    rot90: Annotated[int, Field(ge=0, le=3)] = 0
    flip: bool = False
    label_perm: Annotated[int, Field(ge=0)] = 0
    seed: Annotated[int, Field(ge=0)] = 0


TaskSpec = Annotated[Union[MNIST1DTask, DigitsTask], Field(discriminator="dataset")]
DATASETS = ("mnist1d", "digits")


# --------------------------------------------------------------------------- training recipe
class Recipe(_Spec):
    """The one training recipe: constant-LR AdamW, fixed batch size and step budget."""

    name: str = "adamw"
    lr: Annotated[float, Field(gt=0, le=1.0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0, le=1.0)] = 0.0
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 100
    steps: Annotated[int, Field(ge=0, le=10_000_000)] = 2000
    eval_every: Annotated[int, Field(ge=1)] = 100


# --------------------------------------------------------------------------- parsing
_ARCH = TypeAdapter(ArchSpec)
_TASK = TypeAdapter(TaskSpec)


def _parse_value(text: str) -> Any:
    """A spec-string value: ``64x64`` is a list of ints, otherwise a JSON-ish scalar."""
    if "x" in text and all(re.fullmatch(r"\s*-?[0-9]+\s*", p) for p in text.split("x")):
        try:
            return [int(p) for p in text.split("x")]
        except ValueError:  # more digits than int() accepts: left as text, rejected by validation
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _string_to_dict(text: str, head: str) -> dict[str, Any]:
    text = text.strip()
    name, _, rest = text.partition(":")
    if not name:
        raise SpecError(f"empty spec string {text!r}: expected '{head}:key=value,...'")
    out: dict[str, Any] = {head: name.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"in spec {text!r}: {item!r} is not key=value")
        if key.strip() in out:
            raise SpecError(f"in spec {text!r}: {key.strip()!r} given twice")
        if key.strip() == "hidden" and value.strip() in ("", "none"):
            out["hidden"] = []  # an MLP with no hidden layer is a linear classifier
            continue
        out[key.strip()] = _parse_value(value.strip())
    return out


def _load_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 text, or a NUL byte in the path
        raise SpecError(f"cannot read spec file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"spec file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc


def load_settings(source: Any, model: type[BaseModel], kind: str, error: type[SpecError] = SpecError) -> Any:
    """A settings ``model`` (a grid, a suite) from a YAML file or a dict; ``error`` names the file and every bad field."""
    where = kind
    if not isinstance(source, dict):
        path = Path(source)
        where = f"{kind} {path}"
        if not path.is_file():
            raise error(f"{kind} file {path} not found")
        try:
            source = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise error(f"{kind} file {path} is not valid YAML: {exc}") from None
        except UnicodeDecodeError:
            raise error(f"{kind} file {path} is not text") from None
        if not isinstance(source, dict):
            raise error(f"{kind} file {path} must hold a mapping, found {type(source).__name__}")
    try:
        return model.model_validate(source)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise error(f"invalid {where} — {details}") from None


def _explain(kind: str, exc: ValidationError) -> SpecError:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or kind
        lines.append(f"{where}: {err['msg']}")
    return SpecError(f"invalid {kind} spec — " + "; ".join(lines))


def _parse(value: Any, adapter: TypeAdapter, kind: str, head: str, choices: tuple[str, ...]):
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, Path) or (isinstance(value, str) and value.endswith((".yaml", ".yml", ".json"))):
        value = _load_file(Path(value))
    if isinstance(value, str):
        value = _string_to_dict(value, head)
    if not isinstance(value, dict):
        raise SpecError(f"a {kind} spec must be a string, a dict or a YAML/JSON file, not {type(value).__name__}")
    if value.get(head) not in choices:
        raise SpecError(f"unknown {head} {value.get(head)!r} in {kind} spec; choose one of {', '.join(choices)}")
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _explain(kind, exc) from None


def parse_arch(value: Any) -> MLPSpec | CNN1dSpec | CNN2dSpec | TransformerSpec:
    """An architecture from ``"mlp:hidden=64x64"``, a dict, a YAML/JSON path, or a spec (returned)."""
    return _parse(value, _ARCH, "architecture", "family", FAMILIES)


def parse_task(value: Any) -> MNIST1DTask | DigitsTask:
    """A task from ``"mnist1d:noise=0.5"``, a dict, a YAML/JSON path, or a spec (returned)."""
    return _parse(value, _TASK, "task", "dataset", DATASETS)


def parse_recipe(value: Any) -> Recipe:
    if isinstance(value, Recipe):
        return value
    if value is None:
        return Recipe()
    if not isinstance(value, dict):
        raise SpecError(f"a recipe must be a mapping, not {type(value).__name__}")
    try:
        return Recipe.model_validate(value)
    except ValidationError as exc:
        raise _explain("recipe", exc) from None
