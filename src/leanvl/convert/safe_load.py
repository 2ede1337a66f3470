"""Read official checkpoint files without executing any pickled code.

Every leanvl converter reads the released All-in-one (PyTorch-Lightning 1.1.4 ``.ckpt``),
SViTT (``torch.save`` ``.pth`` with a pickled OmegaConf config) and Video-Panda (sharded
Hugging Face ``.bin`` / ``.safetensors``) weights through this module. A pickle can run any
function it names, so a plain ``torch.load(..., weights_only=False)`` of a downloaded file is
arbitrary code execution. Here pickles go through two independent gates:

1. A static scan (:mod:`pickletools`, nothing is executed) lists every global the pickle
   references. Anything not on the allow-list raises :class:`UnsafeCheckpointError` naming the
   file and the global, before a single object is built.
2. The actual load is torch's weights-only unpickler (``torch.load(..., weights_only=True)``),
   which only builds tensors, plain containers and globals registered for the duration of the
   call. For the non-tensor globals that official checkpoints contain (Lightning's
   ``AttributeDict`` and callback classes, sacred's read-only config containers, OmegaConf's
   ``DictConfig`` and nodes, ``argparse.Namespace``, numpy arrays and scalars, paths) we
   register *inert stand-ins* under the original names: classes that only record the pickled
   arguments and state. The original libraries need not be installed and none of their code
   runs.

:func:`to_plain` then turns stand-ins into dicts, lists, tuples, scalars, strings and tensors,
which is all :func:`read_checkpoint` ever returns. Safetensors files are read with the
``safetensors`` library (a JSON header plus raw bytes; no code path exists).

Papers whose checkpoints this serves: All-in-one (Wang et al., CVPR 2023), SViTT (Li et al.,
CVPR 2023), Video-Panda (Yi et al., CVPR 2025).
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import ntpath
import pickle
import pickletools
import posixpath
import re
import struct
import threading
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "read_checkpoint",
    "read_sharded",
    "read_state_dict",
    "to_plain",
]

_ALLOWED_HINT = "only tensors, containers and known inert classes are allowed"


class CheckpointReadError(ValueError):
    """A checkpoint file is missing, corrupt, truncated or not a checkpoint.

    ``str(err)`` is ``"'<path>': <reason>"``.

    Attributes:
        path: the file (or folder) that could not be read.
        reason: short human-readable cause.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"'{self.path}': {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class UnsafeCheckpointError(ValueError):
    """A pickle references a global outside the allow-list; nothing from it was executed.

    ``str(err)`` is ``"'<path>': refused to <action> global '<name>' (...)"``.

    Attributes:
        path: the refused file.
        global_name: the refused global as ``module.qualname`` (``"posix.system"``); empty
            when torch's unpickler refused an operation rather than a named global.
        action: ``"load"`` (the global is not allowed at all), ``"call"`` or
            ``"instantiate"`` (the global is only allowed as a name, e.g. a dict key).
    """

    def __init__(self, path: str | Path, global_name: str, action: str = "load", detail: str = ""):
        self.path = str(path)
        self.global_name = global_name
        self.action = action
        self.detail = detail
        what = f"global '{global_name}'" if global_name else "the pickle"
        extra = f"; {detail}" if detail else ""
        super().__init__(f"'{self.path}': refused to {action} {what} ({_ALLOWED_HINT}{extra})")

    def __reduce__(self):
        return (type(self), (self.path, self.global_name, self.action, self.detail))


class _Refused(Exception):
    """Raised inside the unpickler by an inert stand-in that is misused; mapped to
    :class:`UnsafeCheckpointError` once the file name is known."""

    def __init__(self, global_name: str, action: str):
        super().__init__(global_name, action)
        self.global_name = global_name
        self.action = action


# ---------------------------------------------------------------------------------------------
# Inert stand-ins
# ---------------------------------------------------------------------------------------------


class _GlobalRef:
    """A class or type that may only be *referenced* by name (a dict key, a type annotation).

    Lightning 1.1.4 keys ``checkpoint["callbacks"]`` by the callback class object and OmegaConf
    metadata stores ``typing.Any`` / ``dict`` as ``ref_type`` / ``object_type``. Calling or
    instantiating the reference is refused.
    """

    __slots__ = ("name",)

    def __new__(cls, *args: Any, **kwargs: Any):
        # The weights-only unpickler runs NEWOBJ as ``cls.__new__(cls, *args)``; with a
        # reference instance in the ``cls`` slot, refuse instead of building anything.
        if isinstance(cls, _GlobalRef):
            raise _Refused(cls.name, "instantiate")
        return object.__new__(cls)

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any):
        raise _Refused(self.name, "call")

    def __repr__(self) -> str:
        return f"<global {self.name}>"


class _StandIn:
    """Records the pickled state of an object (what ``BUILD`` passes); runs nothing.

    Subclasses are created per original global name (see :func:`_standin_class`) so that
    :func:`to_plain` knows what the object was (``_leanvl_name``, ``_leanvl_kind``).
    """

    _leanvl_name = ""
    _leanvl_kind = "object"

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = object.__new__(cls)
        obj.__dict__["_leanvl_state"] = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_leanvl_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in {self._leanvl_name}>"


class _DictStandIn(dict):
    """A dict subclass from a pickle (Lightning ``AttributeDict``, sacred ``ReadOnlyDict``).

    Pickled either as ``NEWOBJ`` + ``SETITEMS`` (torch's unpickler only sets items on a plain
    ``dict``, so an argument-less construction returns one) or as ``REDUCE(cls, (items,))`` +
    optional ``BUILD`` (sacred; the state is a read-only message we drop).
    """

    _leanvl_name = ""

    def __new__(cls, *args: Any, **kwargs: Any):
        if not args and not kwargs:
            return {}
        return dict.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        dict.__init__(self, *args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        pass


class _ListStandIn(list):
    """A list subclass from a pickle (sacred ``ReadOnlyList``); see :class:`_DictStandIn`."""

    _leanvl_name = ""

    def __new__(cls, *args: Any, **kwargs: Any):
        if not args and not kwargs:
            return []
        return list.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        list.__init__(self, *args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        pass


class _StrStandIn(str):
    """A str subclass (``torch.torch_version.TorchVersion``): becomes a plain ``str``."""

    def __new__(cls, *args: Any, **kwargs: Any):
        return str(*args)


def _standin_class(name: str, base: type, kind: str = "object") -> type:
    module, _, qualname = name.rpartition(".")
    return type(
        qualname,
        (base,),
        {
            "__module__": module,
            "__qualname__": qualname,
            "_leanvl_name": name,
            "_leanvl_kind": kind,
        },
    )


def _defaultdict_standin(*args: Any) -> dict:
    # ``collections.defaultdict`` pickles as REDUCE(defaultdict, (factory,)) + SETITEMS; the
    # factory (usually ``dict``, itself only a name reference here) is irrelevant to the data.
    return {}


def _posix_path_standin(*parts: Any) -> str:
    if not all(isinstance(p, str) for p in parts):
        raise _Refused("pathlib.PurePosixPath", "call")
    return posixpath.join(*parts) if parts else "."


def _windows_path_standin(*parts: Any) -> str:
    if not all(isinstance(p, str) for p in parts):
        raise _Refused("pathlib.PureWindowsPath", "call")
    return ntpath.join(*parts) if parts else "."


def _load_from_bytes_standin(data: Any) -> Any:
    # Plain ``pickle.dumps`` of a tensor stores its storage as a nested torch.save blob.
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused("torch.storage._load_from_bytes", "call")
    return _torch_load(io.BytesIO(bytes(data)), mmap=False)


# Lightning / sacred / OmegaConf / stdlib globals that official checkpoints contain.
_DICT_LIKE = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "sacred.config.custom_containers.ReadOnlyDict",
)
_LIST_LIKE = ("sacred.config.custom_containers.ReadOnlyList",)
# fmt: off
_OMEGACONF_NODES = (
    "ValueNode", "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode",
    "PathNode", "InterpolationResultNode",
)
# fmt: on
_OMEGACONF_KINDS = {
    "omegaconf.dictconfig.DictConfig": "omegaconf_dict",
    "omegaconf.listconfig.ListConfig": "omegaconf_list",
    "omegaconf.base.ContainerMetadata": "omegaconf_meta",
    "omegaconf.base.Metadata": "omegaconf_meta",
    **{f"omegaconf.nodes.{node}": "omegaconf_value" for node in _OMEGACONF_NODES},
}
_OBJECT_LIKE = {"argparse.Namespace": "namespace", **_OMEGACONF_KINDS}
_FUNCTIONS = {
    "collections.defaultdict": _defaultdict_standin,
    "torch.storage._load_from_bytes": _load_from_bytes_standin,
    **{f"pathlib.{n}": _posix_path_standin for n in ("Path", "PosixPath", "PurePosixPath")},
    **{f"pathlib._local.{n}": _posix_path_standin for n in ("PosixPath", "PurePosixPath")},
    **{f"pathlib.{n}": _windows_path_standin for n in ("WindowsPath", "PureWindowsPath")},
    **{f"pathlib._local.{n}": _windows_path_standin for n in ("WindowsPath", "PureWindowsPath")},
}
# Globals allowed only as names (never called): type annotations and class-object dict keys.
# fmt: off
_NAME_ONLY = frozenset(
    [f"typing.{n}" for n in ("Any", "Dict", "List", "Tuple", "Optional", "Union", "Sequence")]
    + [f"builtins.{n}" for n in ("dict", "list", "tuple", "int", "float", "str", "bool", "bytes",
                                 "object")]
)
# fmt: on
_NAME_ONLY_PREFIXES = (
    "pytorch_lightning.callbacks.",
    "lightning.pytorch.callbacks.",
)


def _numpy_entries() -> list[tuple[Any, str]]:
    """Real numpy reconstruction functions, registered under both numpy 1 and 2 module names.

    These are the entries torch's documentation suggests for numpy data; they only build
    arrays, dtypes and scalars. Skipped (so numpy globals are refused) if numpy is missing.
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a leanvl dependency
        return []
    reconstruct = np.arange(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    entries: list[tuple[Any, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries += [(reconstruct, f"{core}._reconstruct"), (scalar, f"{core}.scalar")]
    # BUILD on a dtype instance is checked against its concrete class (numpy.dtypes.*DType).
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    dtype_classes.add(type(np.dtype([("a", "f4")])))
    entries += [(cls, f"numpy.dtypes.{cls.__name__}") for cls in dtype_classes]
    return entries


_TABLE: dict[str, Any] | None = None
_TABLE_LOCK = threading.Lock()


def _standin_table() -> dict[str, Any]:
    """Full name -> registered object, built once."""
    global _TABLE
    with _TABLE_LOCK:
        if _TABLE is None:
            table: dict[str, Any] = {}
            for name in _DICT_LIKE:
                table[name] = _standin_class(name, _DictStandIn)
            for name in _LIST_LIKE:
                table[name] = _standin_class(name, _ListStandIn)
            for name, kind in _OBJECT_LIKE.items():
                table[name] = _standin_class(name, _StandIn, kind)
            table["torch.torch_version.TorchVersion"] = _standin_class(
                "torch.torch_version.TorchVersion", _StrStandIn
            )
            table.update(_FUNCTIONS)
            for name in _NAME_ONLY:
                table[name] = _GlobalRef(name)
            for obj, name in _numpy_entries():
                table[name] = obj
            _TABLE = table
        return _TABLE


def _torch_default_allowed(name: str) -> bool:
    """Whether torch's weights-only unpickler allows ``name`` without registration."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return name in _get_allowed_globals()
    except ImportError:  # pragma: no cover - private API moved; torch still checks itself
        return name.startswith("torch.") or name in {
            "collections.OrderedDict",
            "collections.Counter",
            "_codecs.encode",
            "builtins.bytearray",
            "builtins.set",
            "builtins.complex",
        }


def _is_name_only(name: str) -> bool:
    return name in _NAME_ONLY or name.startswith(_NAME_ONLY_PREFIXES)


def _is_allowed(name: str) -> bool:
    return name in _standin_table() or _torch_default_allowed(name) or _is_name_only(name)


# torch's weights-only registry is process-global; serialize our use of it, and register only
# at the outermost level (the ``_load_from_bytes`` stand-in re-enters ``torch.load``).
_REGISTRY_LOCK = threading.RLock()
_REGISTRY_DEPTH = 0


class _registered:
    """Context manager: our stand-ins (plus ``extra_refs`` name references) are registered
    with torch's weights-only unpickler inside the block and removed on exit."""

    def __init__(self, extra_refs: Iterable[str] = ()):
        self.entries = [(obj, name) for name, obj in _standin_table().items()]
        self.entries += [(_GlobalRef(name), name) for name in sorted(set(extra_refs))]
        self.context = None

    def __enter__(self) -> None:
        global _REGISTRY_DEPTH
        _REGISTRY_LOCK.acquire()
        _REGISTRY_DEPTH += 1
        if _REGISTRY_DEPTH == 1:
            self.context = torch.serialization.safe_globals(self.entries)
            self.context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        global _REGISTRY_DEPTH
        try:
            if self.context is not None:
                self.context.__exit__(*exc)
        finally:
            _REGISTRY_DEPTH -= 1
            _REGISTRY_LOCK.release()


# ---------------------------------------------------------------------------------------------
# Static scan of the globals a pickle references
# ---------------------------------------------------------------------------------------------

_UNKNOWN = object()
_STRING_OPS = frozenset(
    ["SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"]
    + ["SHORT_BINSTRING"]
)
_MEMO_PUT = frozenset(["PUT", "BINPUT", "LONG_BINPUT"])
_MEMO_GET = frozenset(["GET", "BINGET", "LONG_BINGET"])
_NO_STACK_EFFECT = frozenset(["PROTO", "FRAME", "MEMOIZE", *_MEMO_PUT])
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's pre-1.6 torch.save magic number


def _map_py2_name(module: str, name: str) -> str:
    """Python 2 -> 3 renames that Python's unpickler applies to protocol 0-2 pickles.

    These are what a plain ``pickle.load`` would import (``commands.Popen`` is
    ``subprocess.Popen``), so refusals name the real target. torch's weights-only unpickler
    applies a subset of them; where they differ torch refuses on its own.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _iter_globals(stream: Any, ops: list[tuple[str, Any]] | None = None) -> Iterator[str]:
    """Yield every global one pickle references, without executing it.

    ``STACK_GLOBAL`` (protocol 4+) takes its names from the stack; they are tracked when the
    two preceding stack pushes are strings (directly or via the memo), which is how Python
    writes them. Anything else yields a ``<computed ...>`` name, which is never allowed.

    Args:
        stream: binary file positioned at the start of a pickle; left after its STOP.
        ops: if given, the first four ``(opcode name, argument)`` pairs are appended to it.
    """
    memo: dict[Any, Any] = {}
    protocol = 0
    top = [_UNKNOWN, _UNKNOWN]  # values of the last two stack pushes, when known strings
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if ops is not None and len(ops) < 4:
            ops.append((name, arg))
        if name == "PROTO":
            protocol = arg
        if name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            yield _map_py2_name(module, qualname) if protocol < 3 else f"{module}.{qualname}"
            pushed: Any = _UNKNOWN
        elif name == "STACK_GLOBAL":
            module, qualname = top[-2], top[-1]
            if isinstance(module, str) and isinstance(qualname, str):
                yield f"{module}.{qualname}"
            else:
                yield "<computed by the pickle>"
            pushed = _UNKNOWN
        elif name in ("EXT1", "EXT2", "EXT4"):
            yield f"<copyreg extension {arg}>"
            pushed = _UNKNOWN
        elif name in _MEMO_PUT:
            memo[arg] = top[-1]
            continue
        elif name == "MEMOIZE":
            memo[len(memo)] = top[-1]
            continue
        elif name in _NO_STACK_EFFECT:
            continue
        elif name in _STRING_OPS:
            pushed = arg if isinstance(arg, str) else _UNKNOWN
        elif name in _MEMO_GET:
            pushed = memo.get(arg, _UNKNOWN)
        else:
            pushed = _UNKNOWN
        top = [top[-1], pushed]


def _check_pickle(path: Path, stream: Any, refs: set[str]) -> list[tuple[str, Any]]:
    """Scan one pickle; refuse the first global not on the allow-list.

    Returns its first four ``(opcode, argument)`` pairs; name-only references found go into
    ``refs``.
    """
    ops: list[tuple[str, Any]] = []
    try:
        for name in _iter_globals(stream, ops):
            if not _is_allowed(name):
                raise UnsafeCheckpointError(path, name)
            if _is_name_only(name) and name not in _standin_table():
                refs.add(name)
    except UnsafeCheckpointError:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, struct.error) as exc:
        raise CheckpointReadError(path, f"corrupt or truncated pickle data ({exc})") from None
    return ops


def _scan_zip(path: Path, refs: set[str]) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            # Every pickle member, duplicates included (torch's zip reader may pick another
            # entry of the same name than Python's zipfile, and matches names ignoring case).
            pickles = [i for i in archive.infolist() if i.filename.lower().endswith(".pkl")]
            if not any(i.filename.lower().endswith("data.pkl") for i in pickles):
                reason = "zip archive without data.pkl (not a torch.save file)"
                raise CheckpointReadError(path, reason)
            for info in pickles:
                with archive.open(info) as member:
                    # In memory: genops reads byte by byte, slow on a zip member stream.
                    _check_pickle(path, io.BytesIO(member.read()), refs)
    except zipfile.BadZipFile as exc:
        raise CheckpointReadError(path, f"corrupt or truncated zip archive ({exc})") from None


def _scan_pickle_stream(path: Path, refs: set[str]) -> tuple[str, int]:
    """Scan a non-zip pickle file. Returns ``("legacy" | "raw", protocol)``."""
    with open(path, "rb") as stream:
        first = _check_pickle(path, stream, refs)
        protocol = next((arg for op, arg in first if op == "PROTO"), 0)
        if [op for op, _ in first] != ["PROTO", "LONG1", "STOP"] or first[1][1] != LEGACY_MAGIC:
            return "raw", protocol
        # Legacy torch.save: magic, protocol version, sys info, the object, storage keys.
        for _ in range(4):
            _check_pickle(path, stream, refs)
    return "legacy", protocol


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _torch_load(source: Any, mmap: bool) -> Any:
    return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap or None)


def _sniff(path: Path) -> str:
    if not path.exists():
        raise CheckpointReadError(path, "no such file")
    if path.is_dir():
        raise CheckpointReadError(path, "is a folder, not a checkpoint file (see read_sharded)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointReadError(path, "zero bytes")
    with open(path, "rb") as stream:
        head = stream.read(16)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) > 8 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 8 + header_len <= size:
            return "safetensors"
        raise CheckpointReadError(path, "truncated safetensors file (header runs past the end)")
    if path.suffix == ".safetensors":
        raise CheckpointReadError(path, "not a safetensors file (bad header)")
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointReadError(
        path,
        f"not a checkpoint (unrecognised header {head[:8]!r}; expected a torch.save "
        "zip or pickle, or safetensors)",
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    # Recent safetensors releases already map the file lazily and copy-on-write.
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointReadError(path, f"corrupt safetensors file ({exc})") from None


_LOAD_ERRORS = (RuntimeError, EOFError, ValueError, TypeError, KeyError, OSError, AttributeError)


def _load_pickled(path: Path, fmt: str, mmap: bool) -> Any:
    refs: set[str] = set()
    if fmt == "zip":
        _scan_zip(path, refs)
        kind, protocol = "zip", 2
    else:
        kind, protocol = _scan_pickle_stream(path, refs)
    if kind == "raw" and protocol > 2:
        raise CheckpointReadError(
            path,
            f"plain pickle with protocol {protocol}: only torch.save files and protocol-2 "
            "pickles can be read safely (re-save with torch.save or safetensors)",
        )
    try:
        with _registered(refs):
            if kind == "raw":
                from torch._weights_only_unpickler import Unpickler

                with open(path, "rb") as stream:
                    return Unpickler(stream, encoding="utf-8").load()
            return _torch_load(path, mmap=mmap and kind == "zip")
    except _Refused as exc:
        raise UnsafeCheckpointError(path, exc.global_name, exc.action) from None
    except pickle.UnpicklingError as exc:
        # The scan already refused unknown globals; torch's own refusal is a second line.
        reason = _torch_reason(str(exc))
        if "GLOBAL" in reason or "allowlisted" in reason or "unrecognized function" in reason:
            name = _global_named_in(reason)
            detail = "" if name else f"torch: {reason}"
            raise UnsafeCheckpointError(path, name, detail=detail) from None
        raise CheckpointReadError(path, f"corrupt pickle data ({reason})") from None
    except _LOAD_ERRORS as exc:
        reason = f"{type(exc).__name__}: {_torch_reason(str(exc))}"
        raise CheckpointReadError(path, f"corrupt or truncated checkpoint ({reason})") from None


_TORCH_ADVICE = ("Weights only load failed", "Check the documentation", "(1)", "(2)")


def _torch_reason(message: str) -> str:
    """The informative line of a torch error (weights-only errors wrap it in advice)."""
    match = re.search(r"WeightsUnpickler error: (.*)", message)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_TORCH_ADVICE)]
    return (useful or lines or ["no details"])[0]


def _global_named_in(reason: str) -> str:
    match = re.search(r"GLOBAL ([\w.]+)", reason) or re.search(r"function (\S+)", reason)
    return match.group(1) if match else ""


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint file into plain Python data and tensors, executing no pickled code.

    Supported: ``torch.save`` zip files (``.ckpt``, ``.pth``, ``.pt``, ``.bin``), the legacy
    pre-1.6 ``torch.save`` format, protocol-2 plain pickles, and ``.safetensors`` (detected
    from the file's header, not its name).

    Args:
        path: the file.
        mmap: memory-map tensor data instead of reading it (``torch.save`` zip files; the
            ``safetensors`` library maps lazily on its own); useful for multi-GB checkpoints.
            Pages are mapped copy-on-write, so writing to a tensor never changes the file.

    Returns:
        The top-level dict, converted by :func:`to_plain`: only dicts, lists, tuples,
        scalars, strings, ``None`` and tensors.

    Raises:
        UnsafeCheckpointError: the pickle references a global outside the allow-list.
        CheckpointReadError: missing, empty, corrupt, truncated or not-a-checkpoint file, or
            the top-level object is not a dict.
    """
    path = Path(path)
    fmt = _sniff(path)
    if fmt == "safetensors":
        return dict(_read_safetensors(path))
    obj = to_plain(_load_pickled(path, fmt, mmap))
    if not isinstance(obj, dict):
        raise CheckpointReadError(path, f"top-level object is a {type(obj).__name__}, not a dict")
    return obj


# ---------------------------------------------------------------------------------------------
# Conversion to plain data
# ---------------------------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """Convert unpickled checkpoint data into plain containers, scalars, strings and tensors.

    Stand-ins become what they held: OmegaConf ``DictConfig``/``ListConfig`` become the dict
    or list of their (unresolved) values, like ``OmegaConf.to_container(cfg)``;
    ``argparse.Namespace`` becomes a dict; dict/list subclasses become dict/list; name-only
    globals (Lightning callback classes used as keys) become their dotted name. numpy arrays
    of numbers or bools become tensors, other arrays nested lists; numpy scalars become Python
    scalars; ``Parameter`` becomes a plain tensor; sets become lists; dtypes and devices become
    their string. Shared and cyclic references are preserved.

    Args:
        obj: anything :func:`read_checkpoint`'s unpickler produced.

    Returns:
        The plain equivalent.
    """
    return _Plainer().convert(obj)


class _Plainer:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def convert(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            return _plain_scalar(obj)
        if isinstance(obj, torch.Tensor):
            if isinstance(obj, torch.nn.Parameter):
                return obj.detach()
            return obj
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        return self._convert_new(obj, key)

    def _convert_new(self, obj: Any, key: int) -> Any:
        if isinstance(obj, dict):
            return self._dict(key, obj.items())
        if isinstance(obj, list):
            return self._list(key, obj)
        if isinstance(obj, tuple):  # includes torch.Size
            return tuple(self.convert(v) for v in obj)
        if isinstance(obj, (set, frozenset)):
            items = [self.convert(v) for v in obj]
            try:
                return sorted(items)
            except TypeError:
                return items
        if isinstance(obj, bytearray):
            return bytes(obj)
        if isinstance(obj, _GlobalRef):
            return obj.name
        if isinstance(obj, type):
            return f"{obj.__module__}.{obj.__qualname__}"
        if isinstance(obj, _StandIn):
            return self._standin(obj, key)
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
        if isinstance(obj, (torch.UntypedStorage, torch.storage.TypedStorage)):
            return _storage_to_tensor(obj)
        converted = self._numpy(obj)
        if converted is not _UNKNOWN:
            return converted
        # Unreachable for what the weights-only unpickler can build; keep the contract anyway.
        return repr(obj)

    def _dict(self, key: int, items: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        self.memo[key] = out  # before the items: a cycle comes back to this very dict
        for k, v in items:
            out[self.convert(k)] = self.convert(v)
        return out

    def _list(self, key: int, items: Iterable[Any]) -> list[Any]:
        out: list[Any] = []
        self.memo[key] = out
        out.extend(self.convert(v) for v in items)
        return out

    def _standin(self, obj: _StandIn, key: int) -> Any:
        kind = obj._leanvl_kind
        state = _state_dict_of(obj)
        if kind == "omegaconf_value":
            return self.convert(state.get("_val"))
        if kind in ("omegaconf_dict", "omegaconf_list"):
            # Nodes keep their parent in ``_parent``; only ``_content`` is data.
            content = state.get("_content", state.get("content"))
            if isinstance(content, dict):
                return self._dict(key, content.items())
            if isinstance(content, list):
                return self._list(key, content)
            return self.convert(content)  # None, "???" (missing) or an interpolation string
        if kind == "omegaconf_meta":
            return {k: self.convert(v) for k, v in state.items() if k != "resolver_cache"}
        return self._dict(key, state.items())  # argparse.Namespace: its attributes

    def _numpy(self, obj: Any) -> Any:
        try:
            import numpy as np
        except ImportError:  # pragma: no cover
            return _UNKNOWN
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "biufc" and obj.dtype.fields is None:
                native = obj.astype(obj.dtype.newbyteorder("="), copy=False)
                try:
                    return torch.from_numpy(np.ascontiguousarray(native).copy())
                except TypeError:  # a dtype torch lacks (e.g. uint64 on old torch)
                    return self.convert(obj.tolist())
            return self.convert(obj.tolist())
        if isinstance(obj, np.generic):
            return self.convert(obj.item())
        if isinstance(obj, np.dtype):
            return str(obj)
        return _UNKNOWN


_SCALAR_TYPES = (bool, int, float, complex, str, bytes)


def _plain_scalar(obj: Any) -> Any:
    # Subclasses (numpy.float64 is a float, IntEnum an int) become the exact builtin type.
    if obj is None or type(obj) in _SCALAR_TYPES:
        return obj
    return next(exact(obj) for exact in _SCALAR_TYPES if isinstance(obj, exact))


def _state_dict_of(obj: _StandIn) -> dict[str, Any]:
    state = obj.__dict__.get("_leanvl_state")
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
        merged = dict(state[0] or {})
        merged.update(state[1] or {})
        return merged
    if isinstance(state, dict):
        return state
    return {}


def _storage_to_tensor(storage: Any) -> torch.Tensor:
    if isinstance(storage, torch.storage.TypedStorage):
        return torch.tensor([], dtype=storage.dtype).set_(storage)
    return torch.tensor([], dtype=torch.uint8).set_(storage)


# ---------------------------------------------------------------------------------------------
# State dicts and sharded folders
# ---------------------------------------------------------------------------------------------

_STATE_DICT_KEYS = ("state_dict", "model", "module")


def read_state_dict(
    path: str | Path, prefixes_to_strip: Iterable[str] = (), *, mmap: bool = False
) -> dict[str, torch.Tensor]:
    """Read the model weights of a checkpoint file as a flat name -> tensor dict.

    Looks for a Lightning ``state_dict`` entry, then ``model`` (SViTT, DeiT-style), then
    ``module`` (DeepSpeed-style), then treats the whole file as a state dict.

    Args:
        path: the checkpoint file (any format :func:`read_checkpoint` reads).
        prefixes_to_strip: for each key, the first of these prefixes it starts with is removed
            once (e.g. ``("module.",)`` for DDP-wrapped saves).
        mmap: see :func:`read_checkpoint`.

    Returns:
        Name -> tensor, in file order.

    Raises:
        CheckpointReadError: no state dict found, a non-tensor entry, or two keys that become
            equal after prefix stripping.
        UnsafeCheckpointError: see :func:`read_checkpoint`.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, mmap=mmap)
    state = _find_state_dict(path, ckpt)
    return _strip_prefixes(path, state, tuple(prefixes_to_strip))


def _find_state_dict(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    for key in _STATE_DICT_KEYS:
        value = ckpt.get(key)
        if isinstance(value, dict) and value:
            return _check_tensors(path, value, where=f"['{key}']")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return _check_tensors(path, ckpt, where="")
    keys = ", ".join(repr(k) for k in list(ckpt)[:12]) or "none"
    raise CheckpointReadError(
        path,
        f"no state dict found (top-level keys: {keys}); expected 'state_dict', 'model', "
        "'module' or a flat name -> tensor dict",
    )


def _check_tensors(path: Path, state: dict[Any, Any], where: str) -> dict[str, Any]:
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointReadError(path, f"state dict{where} has a non-string key {key!r}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointReadError(
                path, f"state dict{where} entry '{key}' is a {type(value).__name__}, not a tensor"
            )
    return state


def _strip_prefixes(
    path: Path, state: dict[str, torch.Tensor], prefixes: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    if not prefixes:
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = next((key[len(p) :] for p in prefixes if p and key.startswith(p)), key)
        if new in out:
            raise CheckpointReadError(
                path,
                f"keys '{origin[new]}' and '{key}' both become '{new}' after stripping "
                f"prefixes {list(prefixes)}",
            )
        out[new] = value
        origin[new] = key
    return out


_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")


def read_sharded(folder: str | Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a Hugging Face ``save_pretrained`` folder's weights into one name -> tensor dict.

    Uses ``model.safetensors.index.json`` or ``pytorch_model.bin.index.json`` (sharded) when
    present, else ``model.safetensors`` or ``pytorch_model.bin``. Every shard goes through
    :func:`read_state_dict`, so ``.bin`` shards get the same pickle checks.

    Args:
        folder: the folder, an index JSON file, or a single weights file.
        mmap: see :func:`read_checkpoint`.

    Returns:
        Name -> tensor for the whole model, in index order.

    Raises:
        CheckpointReadError: no weights found, a bad index, a shard missing or outside the
            folder, tensors missing from their shard or a tensor present in two shards.
        UnsafeCheckpointError: a ``.bin`` shard references a refused global.
    """
    folder = Path(folder)
    if folder.is_file():
        if folder.name.endswith(".index.json"):
            return _read_index(folder, mmap)
        return read_state_dict(folder, mmap=mmap)
    if not folder.is_dir():
        raise CheckpointReadError(folder, "no such folder")
    for name in _INDEX_NAMES:
        if (folder / name).is_file():
            return _read_index(folder / name, mmap)
    for name in _SINGLE_NAMES:
        if (folder / name).is_file():
            return read_state_dict(folder / name, mmap=mmap)
    present = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "empty folder"
    raise CheckpointReadError(
        folder,
        f"no weights found (looked for {', '.join(_INDEX_NAMES + _SINGLE_NAMES)}; "
        f"found: {present})",
    )


def _read_index(index_path: Path, mmap: bool) -> dict[str, torch.Tensor]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointReadError(index_path, f"unreadable index JSON ({exc})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointReadError(index_path, "index has no 'weight_map' of name -> shard file")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    loaded: dict[str, torch.Tensor] = {}
    for shard, names in shards.items():
        # A bare file name (the Hub cache symlinks shards elsewhere, so no resolve()).
        if shard in ("", ".", "..") or Path(shard).name != shard or "\\" in shard:
            raise CheckpointReadError(
                index_path, f"shard '{shard}' is not a file name inside the index's folder"
            )
        shard_path = index_path.parent / shard
        tensors = read_state_dict(shard_path, mmap=mmap)
        missing = [n for n in names if n not in tensors]
        if missing:
            raise CheckpointReadError(
                shard_path,
                f"{len(missing)} tensors listed in {index_path.name} are missing, "
                f"e.g. '{missing[0]}'",
            )
        for name, tensor in tensors.items():
            if name in loaded:
                raise CheckpointReadError(
                    shard_path, f"tensor '{name}' also appears in another shard"
                )
            if weight_map.get(name) != shard:
                raise CheckpointReadError(
                    shard_path, f"tensor '{name}' is not listed for this shard in {index_path.name}"
                )
            loaded[name] = tensor
    return {name: loaded[name] for name in weight_map}
