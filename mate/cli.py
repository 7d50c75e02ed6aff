"""Owns how every command reports a user's mistake.

Every ``python -m mate.*`` command (``mate.train``, ``mate.evaluate``, ``mate.ablate``,
``mate.diagnostics``, ``mate.data.synthetic``, ``mate.export``, ``mate.t2m_eval``) parses its flags, then runs inside
:func:`user_errors`. A user's mistake ends the command with ONE line, ``error: <message>``, on
stderr and a non-zero exit status, without a Python traceback; ``--debug`` (:func:`add_debug_flag`)
shows the traceback instead. Anything else is a bug and keeps its traceback.

What counts as a user's mistake (:func:`is_user_mistake`):

* a path that is not there or not usable: ``FileNotFoundError`` (with MATE's
  ``MissingWeightsError``: encoder weights not on this machine, and ``RunDirectoryError``: not a
  finished run), ``NotADirectoryError``, ``IsADirectoryError``, ``FileExistsError``,
  ``PermissionError``;
* a damaged file the message names: ``ChecksumMismatchError`` (pinned encoder weights that
  differ), ``CorruptCheckpointError``;
* a bad value, when MATE's own checks raised it: ``ValueError`` (``ConfigError`` for a flag,
  ``UnknownEncoderSpecError``, a malformed dataset file, ...) and ``ImportError`` (an optional
  backend that is not installed, named with its pip command), when the innermost frame of the
  traceback is in the ``mate`` package. The same exception raised inside numpy, torch or another
  library is treated as a bug, since no MATE check vouches for its message;
* ``KeyboardInterrupt``: ``interrupted``, exit status 130.

argparse's own errors (an unknown flag, a bad choice) keep argparse's usage line and status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Iterator

__all__ = ["add_debug_flag", "is_user_mistake", "one_line", "user_errors"]

#: Always a user's mistake: a path the user gave that is not there or not usable.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)
#: A user's mistake when MATE's own code raised it (the message is one MATE wrote for the user).
_CHECKED_ERRORS = (ValueError, ImportError)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the traceback of an error instead of the one-line message."""
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the Python traceback instead of one 'error:' line")


def _raised_in_mate(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback runs code of the ``mate`` package (a
    module run with ``python -m`` counts by its spec name)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    namespace = tb.tb_frame.f_globals
    name = getattr(namespace.get("__spec__"), "name", None) or namespace.get("__name__", "")
    return name == "mate" or name.startswith("mate.")


#: Damaged-file errors, by (module, class): looked up in ``sys.modules`` only (an exception of a
#: class whose module was never imported cannot have been raised), so this module imports nothing.
_DAMAGED_FILE_ERRORS = (("mate.checkpoint", "CorruptCheckpointError"),
                        ("mate.text.encoder_base", "ChecksumMismatchError"))


def is_user_mistake(exc: BaseException) -> bool:
    """The module docstring's rule."""
    damaged = tuple(getattr(sys.modules[module], name) for module, name in _DAMAGED_FILE_ERRORS
                    if module in sys.modules)
    if isinstance(exc, _PATH_ERRORS + damaged + (KeyboardInterrupt,)):
        return True
    return isinstance(exc, _CHECKED_ERRORS) and _raised_in_mate(exc)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace runs, newlines included, become one space),
    or its class name when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def user_errors(debug: bool = False, status: int = 1) -> Iterator[None]:
    """Run a command's body: a user's mistake becomes ``error: <message>`` and exit ``status``
    (``SystemExit``; with the default 1 the message travels in the exception, as
    ``SystemExit("error: ...")``), an interrupt ``interrupted`` and 130. ``debug`` re-raises
    everything unchanged. ``SystemExit`` and bugs pass through."""
    try:
        yield
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - classified below; everything else is re-raised
        if debug or not is_user_mistake(exc):
            raise
        if isinstance(exc, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        message = f"error: {one_line(exc)}"
        if status == 1:
            raise SystemExit(message) from None
        print(message, file=sys.stderr)
        raise SystemExit(status) from None
