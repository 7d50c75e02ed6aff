"""The installed layout: kernels/ and segment/ are mate.kernels and mate.segment, never top-level."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, json, mate, mate.kernels, mate.segment
out = {"mate": mate.__file__, "kernels": mate.kernels.__file__, "segment": mate.segment.__file__,
       "backends": mate.segment.available_backends()}
for name in ("kernels", "segment"):
    spec = importlib.util.find_spec(name)
    out["top_" + name] = spec.origin if spec is not None else None
print(json.dumps(out))
"""


def run_probe(cwd: Path, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra or {})
    # -I would drop site-packages' editable finder; -P keeps cwd off sys.path (what a user gets
    # when running a script from elsewhere) and is available from Python 3.11.
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    result = subprocess.run(
        [sys.executable, *flags, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_not_ours(origin: str | None):
    # Another distribution may own a top-level `kernels`/`segment` (PyPI has both); ours must not.
    assert origin is None or not Path(origin).resolve().is_relative_to(REPO_ROOT), origin


def test_installed_layout(tmp_path):
    info = run_probe(tmp_path)
    # mate.kernels comes from kernels/ (editable) or mate/kernels/ (regular install).
    assert Path(info["kernels"]).parent.name == "kernels"
    assert Path(info["segment"]).parent.name == "segment"
    assert "cpp" in info["backends"]
    assert_not_ours(info["top_kernels"])
    assert_not_ours(info["top_segment"])


@pytest.mark.slow
def test_regular_wheel_install(tmp_path):
    """Build a regular (non-editable) wheel, install it into a bare target directory and import it
    from there: the extension is inside mate/segment/ and nothing is installed top-level."""
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pybind11") is None:
        pytest.skip("building a wheel needs setuptools and pybind11 in this environment")
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    (wheel,) = wheel_dir.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"mate"}, top_level
    assert "mate/kernels/__init__.py" in names
    assert any(n.startswith("mate/segment/_partition") and n.endswith((".so", ".pyd")) for n in names)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    info = run_probe(tmp_path, {"PYTHONPATH": str(target)})
    assert Path(info["mate"]).is_relative_to(target)
    assert Path(info["segment"]).is_relative_to(target)
    assert "cpp" in info["backends"]
    assert not (target / "kernels").exists() and not (target / "segment").exists()


def test_the_kernels_folder_imported_top_level_is_inert(tmp_path):
    """From a checkout's root, ``import kernels`` finds this repository's kernels/ folder
    (transformers probes it for the unrelated hub-kernels package when it loads a model). It must
    not run the kernel modules a second time: their registration would replace mate.kernels'."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import kernels; from mate.ops import _common; "
            "assert kernels.__file__.startswith(sys.argv[1]), kernels.__file__; "
            "assert not _common._TRITON_IMPLS, _common._TRITON_IMPLS; "
            "assert not [m for m in sys.modules if m.startswith('kernels.')], sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(root)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**__import__("os").environ, "TRITON_INTERPRET": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
