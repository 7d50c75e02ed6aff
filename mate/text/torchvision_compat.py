"""Use transformers and open_clip's *text* models where torchvision is absent or broken.

The problem. On PyPI, torchvision exists only as CUDA builds. Next to a CPU build of torch its
import fails with ``RuntimeError: operator torchvision::nms does not exist`` (its compiled ops do
not load, then its Python side registers kernels for them). Two libraries MATE uses are hit:

* transformers decides "torchvision is available" from the installed package files alone, then
  imports it while importing *any* model class (``modeling_utils`` -> loss utils -> image utils), so
  even ``BertModel`` fails to import when a broken torchvision is installed.
* open_clip imports torchvision unconditionally at import time (image transforms in
  ``open_clip.transform``, ``FrozenBatchNorm2d`` in ``open_clip.utils``), so it fails whether
  torchvision is absent or broken. MATE needs only CLIP's text tower and tokenizer.

The solution, in two scoped parts:

1. `block_broken_torchvision` (run when ``mate.text.encoders`` is imported, before transformers
   loads a model class): if torchvision is installed but its import raises, remove its half-imported
   modules and set ``sys.modules["torchvision"] = None``. Python then treats it as not installed
   (``import torchvision`` raises ImportError, ``importlib.util.find_spec`` returns None), which is
   the truth in this process: nothing could use it anyway. transformers falls back to its
   torchvision-free paths. A working or absent torchvision is left untouched. A warning says what
   happened and how to fix the environment.
2. `import_open_clip`: if torchvision is not importable, open_clip is imported with a minimal
   stand-in ``torchvision`` placed in ``sys.modules`` *only for the duration of that import*
   (and ``timm``, which requires torchvision, marked absent, so open_clip takes its own
   "timm not installed" path). The stand-in provides exactly the names open_clip touches at import
   time; every image transform in it raises `ImageTransformsUnavailableError` when used. Afterwards
   ``sys.modules`` is restored, so no other library ever sees the stand-in.

What still works without torchvision: building CLIP models, the text tower, ``SimpleTokenizer``,
loading checkpoints. What does not: open_clip's image preprocessing (``create_model_and_transforms``,
``image_transform``) and freezing BatchNorm in ResNet vision towers; they raise a clear error.
"""
from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
import types
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = [
    "ImageTransformsUnavailableError",
    "block_broken_torchvision",
    "import_open_clip",
]

# Filled by `block_broken_torchvision`: the error a broken torchvision raised in this process.
_broken_torchvision_error: str | None = None


class ImageTransformsUnavailableError(RuntimeError):
    """An open_clip image transform (a torchvision feature) was used where torchvision cannot be
    imported. MATE only needs CLIP's text tower."""


def _torchvision_modules() -> list[str]:
    return [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]


def block_broken_torchvision() -> str:
    """If torchvision is installed but cannot be imported, mark it as not installed for this
    process (``sys.modules["torchvision"] = None``) so that transformers and open_clip skip it, and
    warn once. Returns the status before blocking: ``"importable"``, ``"absent"`` or ``"broken"``.

    Must run before transformers first imports a model class: transformers does not recover from
    a failed attempt in the same process."""
    global _broken_torchvision_error
    if _broken_torchvision_error is not None:
        return "broken"
    if "torchvision" in sys.modules:
        return "importable" if sys.modules["torchvision"] is not None else "absent"
    if importlib.util.find_spec("torchvision") is None:
        return "absent"
    try:
        importlib.import_module("torchvision")
        return "importable"
    except Exception as err:  # noqa: BLE001 - a broken binary package raises anything (RuntimeError, OSError, ...)
        _broken_torchvision_error = f"{type(err).__name__}: {err}"
    # A failed package import leaves the submodules it had finished in sys.modules; drop them so
    # nothing half-initialised is reused, then make every later import fail as "not installed".
    for name in _torchvision_modules():
        del sys.modules[name]
    sys.modules["torchvision"] = None
    warnings.warn(
        "torchvision is installed but cannot be imported "
        f"({_broken_torchvision_error}); this is what a PyPI (CUDA-only) torchvision does next to a "
        "CPU build of torch. MATE marked torchvision as unavailable in this process so that "
        "transformers and open_clip use their text-only paths (MATE needs no image code). To remove "
        "this warning: `pip uninstall torchvision`, or install the torchvision build that matches "
        "your torch.",
        RuntimeWarning,
        stacklevel=2,
    )
    return "broken"


# --------------------------------------------------------------------------------------------
# The stand-in torchvision used while importing open_clip
# --------------------------------------------------------------------------------------------

_UNAVAILABLE_MESSAGE = (
    "{name} is a torchvision feature, and torchvision cannot be imported here (not installed, or a "
    "CUDA-only PyPI build next to a CPU torch). MATE imported open_clip with a text-only stand-in for "
    "torchvision: CLIP's text tower and tokenizer work, image preprocessing does not. Install the "
    "torchvision build that matches your torch to use open_clip's image transforms."
)


class _InterpolationMode(enum.Enum):
    """Same members and values as ``torchvision.transforms.InterpolationMode``: open_clip uses them
    as default argument values at import time (plain names, nothing is computed)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _unavailable_class(qualified_name: str) -> type:
    """A class that open_clip can name and subclass at import time but not instantiate."""

    def __init__(self, *args, **kwargs):  # noqa: N807 - becomes a method
        raise ImageTransformsUnavailableError(_UNAVAILABLE_MESSAGE.format(name=qualified_name))

    class_name = qualified_name.rsplit(".", 1)[-1]
    return type(class_name, (), {"__init__": __init__, "__module__": "torchvision (MATE stand-in)"})


class _UnavailableFunctionsModule(types.ModuleType):
    """``torchvision.transforms.functional``: every attribute is a function that raises."""

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        qualified_name = f"{self.__name__}.{attribute}"

        def unavailable(*args, **kwargs):
            raise ImageTransformsUnavailableError(_UNAVAILABLE_MESSAGE.format(name=qualified_name))

        return unavailable


# The names open_clip 2.x/3.x imports from torchvision at import time (open_clip/transform.py,
# open_clip/utils.py). Checked against open_clip_torch 3.3.0.
_TRANSFORM_CLASSES = ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "Resize", "CenterCrop",
                      "ColorJitter", "Grayscale")


def _build_stand_in_modules() -> dict[str, types.ModuleType]:
    doc = "Text-only stand-in for torchvision, present only while MATE imports open_clip."
    root = types.ModuleType("torchvision", doc)
    root.__version__ = "0.0.0+mate.stand_in"
    root.__path__ = []  # a package, so that submodule imports resolve through sys.modules
    transforms = types.ModuleType("torchvision.transforms", doc)
    transforms.__path__ = []
    functional = _UnavailableFunctionsModule("torchvision.transforms.functional", doc)
    ops = types.ModuleType("torchvision.ops", doc)
    ops.__path__ = []
    ops_misc = types.ModuleType("torchvision.ops.misc", doc)

    transforms.InterpolationMode = _InterpolationMode
    for class_name in _TRANSFORM_CLASSES:
        setattr(transforms, class_name, _unavailable_class(f"torchvision.transforms.{class_name}"))
    transforms.functional = functional
    ops_misc.FrozenBatchNorm2d = _unavailable_class("torchvision.ops.misc.FrozenBatchNorm2d")
    ops.misc = ops_misc
    root.transforms = transforms
    root.ops = ops
    return {module.__name__: module for module in (root, transforms, functional, ops, ops_misc)}


@contextmanager
def _stand_in_torchvision() -> Iterator[None]:
    """Put the stand-in modules (and ``timm`` = absent) into sys.modules; restore on exit."""
    replacements: dict[str, types.ModuleType | None] = dict(_build_stand_in_modules())
    if sys.modules.get("timm") is None:  # timm hard-requires torchvision: make open_clip skip it
        replacements["timm"] = None
    missing = object()
    saved = {name: sys.modules.get(name, missing) for name in replacements}
    sys.modules.update(replacements)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is missing:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _import_transformers_names_open_clip_uses() -> None:
    """open_clip.hf_model imports transformers (optionally) at import time. Import those names
    *before* the stand-in exists, so that transformers, which decides whether torchvision is
    available from ``importlib.util.find_spec``, never sees the stand-in: under it, transformers'
    own check would fail loudly (the stand-in has no import spec) instead of binding to it."""
    try:
        import transformers  # noqa: F401
        import transformers.modeling_outputs  # noqa: F401
        from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig  # noqa: F401
    except ImportError:
        pass  # open_clip treats transformers as optional and will take its own fallback


def import_open_clip():
    """Import and return the ``open_clip`` module, working around a missing or broken torchvision
    (module docstring). Raises ImportError with the install command when open_clip or one of its
    import-time dependencies is missing."""
    if "open_clip" in sys.modules and sys.modules["open_clip"] is not None:
        return sys.modules["open_clip"]
    if importlib.util.find_spec("open_clip") is None:
        raise ImportError(
            "the 'clip' text encoder needs open_clip, which is not installed. Install it without its "
            "image dependencies (torchvision, timm): `pip install ftfy regex` then "
            "`pip install --no-deps open_clip_torch`")
    status = block_broken_torchvision()
    try:
        if status == "importable":
            return importlib.import_module("open_clip")
        _import_transformers_names_open_clip_uses()
        with _stand_in_torchvision():
            return importlib.import_module("open_clip")
    except ImportError as err:
        missing_module = getattr(err, "name", None) or ""
        if status != "importable" and (missing_module.startswith("torchvision") or "torchvision" in str(err)):
            raise ImportError(
                f"this open_clip version needs more of torchvision at import time than MATE's text-only "
                f"stand-in provides ({err}); MATE is tested with open_clip_torch 3.3.0. Install that "
                "version (`pip install --no-deps open_clip_torch==3.3.0`) or a torchvision build that "
                "matches your torch") from err
        raise ImportError(
            f"open_clip is installed but cannot be imported ({err}): install its pure-Python "
            "dependencies with `pip install ftfy regex` (torchvision and timm are not needed for "
            "MATE)") from err
