"""Tests for leanvl.convert.safe_load: refusing pickled code, reading official formats."""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from leanvl.convert.safe_load import (
    CheckpointReadError,
    UnsafeCheckpointError,
    read_checkpoint,
    read_sharded,
    read_state_dict,
    to_plain,
)

SACRED = "sacred.config.custom_containers"
PL_PARSING = "pytorch_lightning.utilities.parsing.AttributeDict"
PL_CKPT = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fake_modules(**classes: type):
    """Install ``module.path=class`` fakes (and empty parent packages) in ``sys.modules``.

    Pickle looks a class up by importing its module, so fakes must be importable while saving;
    they are removed on exit so that loading cannot rely on them.
    """
    saved: dict[str, types.ModuleType | None] = {}
    try:
        for dotted, cls in classes.items():
            module_name, _, qualname = dotted.rpartition(".")
            parts = module_name.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in saved:
                    saved[name] = sys.modules.get(name)
                    sys.modules[name] = types.ModuleType(name)
            cls.__module__ = module_name
            cls.__qualname__ = qualname
            cls.__name__ = qualname
            setattr(sys.modules[module_name], qualname, cls)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class AttributeDict(dict):
    """Mimics pytorch_lightning.utilities.parsing.AttributeDict (PL 1.1.4)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(f'Missing attribute "{key}"') from exc

    def __setattr__(self, key, value):
        self[key] = value


class ReadOnlyDict(dict):
    """Mimics sacred.config.custom_containers.ReadOnlyDict (pickles via ``__reduce__``)."""

    def __reduce__(self):
        return type(self), ({**self},), {"message": "read-only"}


class ReadOnlyList(list):
    """Mimics sacred.config.custom_containers.ReadOnlyList."""

    def __reduce__(self):
        return type(self), ([*self],)


class ModelCheckpoint:
    """Stands for pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint (a dict key)."""


class Payload:
    """Unpickling it would run ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path) -> dict[str, tuple[Payload, str]]:
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (Payload(os.system, (f"touch {marker}",)), r"(posix|nt|os)\.system"),
        "builtins.eval": (Payload(builtins.eval, (code,)), r"builtins\.eval"),
        "builtins.exec": (Payload(builtins.exec, (code,)), r"builtins\.exec"),
        "subprocess.Popen": (
            Payload(subprocess.Popen, (["touch", str(marker)],)),
            r"subprocess\.Popen",
        ),
    }


def write(path: Path, obj, how: str) -> Path:
    if how == "zip":
        torch.save(obj, path)
    elif how == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif how == "pickle2":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    elif how == "pickle5":
        path.write_bytes(pickle.dumps(obj, protocol=5))
    else:
        raise AssertionError(how)
    return path


def assert_same_tensors(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype, key
        assert got[key].shape == tensor.shape, key
        # bit-identical, including NaN payloads and -0.0
        assert torch.equal(got[key].view(torch.uint8), tensor.view(torch.uint8)), key


@pytest.fixture
def state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    fc = torch.randn(2, 8, generator=g)
    special = torch.tensor([float("nan"), -0.0, float("inf"), 1e-45])
    return {
        "text_embeddings.position_ids": torch.arange(40).unsqueeze(0),
        "transformer.cls_token": torch.randn(1, 1, 8, generator=g),
        "itm_score.fc.weight": fc,
        "rank_output.weight": fc[1:],  # a storage view, as in All-in-one
        "special": special,
        "half": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
    }


# ---------------------------------------------------------------------------------------------
# (1) Malicious pickles are refused and never run
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"]
)
@pytest.mark.parametrize(
    "filename,how",
    [("evil.ckpt", "zip"), ("evil.bin", "zip"), ("evil.pth", "legacy"), ("evil.pkl", "pickle5")]
    + [("evil2.pkl", "pickle2")],
)
def test_malicious_pickle_is_refused(tmp_path, payload, filename, how, state_dict):
    marker = tmp_path / "pwned"
    evil, pattern = payloads(marker)[payload]
    # The payload hides behind a valid-looking checkpoint.
    path = write(tmp_path / filename, {"state_dict": state_dict, "extra": [1, {"x": evil}]}, how)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert re.fullmatch(
        rf"'{re.escape(str(path))}': refused to load global '{pattern}' "
        r"\(only tensors, containers and known inert classes are allowed\)",
        message,
    ), message
    assert isinstance(info.value, ValueError)
    assert re.fullmatch(pattern, info.value.global_name)
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle2"])
def test_torch_unpickler_refuses_even_if_the_scan_is_bypassed(tmp_path, monkeypatch, how):
    # Defence in depth: with the static scan allowing everything, torch's weights-only
    # unpickler (with our stand-ins registered) still refuses every payload.
    import leanvl.convert.safe_load as safe_load

    monkeypatch.setattr(safe_load, "_is_allowed", lambda name: True)
    marker = tmp_path / "pwned"
    for name, (evil, _) in payloads(marker).items():
        path = write(tmp_path / f"{name}.ckpt", {"x": [evil]}, how)
        with pytest.raises(UnsafeCheckpointError, match=re.escape(f"'{path}': refused to")):
            read_checkpoint(path)
    assert not marker.exists()


def _rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """Copy a torch zip member by member; ``edit(name, data)`` returns a list of
    ``(name, data)`` to write in its place."""
    import zipfile

    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            for name, data in edit(info.filename, old.read(info.filename)):
                new.writestr(name, data)
    return dst


def test_duplicate_zip_members_are_all_scanned(tmp_path, monkeypatch):
    # torch's zip reader and Python's zipfile may resolve a duplicated name differently; the
    # static scan must see every copy (here zipfile's by-name lookup would find the benign one).
    import leanvl.convert.safe_load as safe_load

    monkeypatch.setattr(safe_load, "_torch_load", lambda *a, **k: pytest.fail("scan missed it"))
    evil = write(tmp_path / "evil.ckpt", {"x": Payload(os.system, ("true",))}, "zip")
    evil_pkl = next(d for n, d in _zip_members(evil) if n.endswith("data.pkl"))
    good = write(tmp_path / "good.ckpt", {"x": 1}, "zip")

    def add_evil_twin(name, data):
        return [(name, evil_pkl), (name, data)] if name.endswith("data.pkl") else [(name, data)]

    with pytest.warns(UserWarning, match="Duplicate name"):
        twin = _rewrite_zip(good, tmp_path / "twin.ckpt", add_evil_twin)
    with pytest.raises(UnsafeCheckpointError, match="twin.ckpt': refused to load global"):
        read_checkpoint(twin)


def _zip_members(path: Path) -> list[tuple[str, bytes]]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [(i.filename, archive.read(i)) for i in archive.infolist()]


def test_refusal_leaves_torch_allowlist_untouched(tmp_path):
    before = set(map(repr, torch.serialization.get_safe_globals()))
    path = write(tmp_path / "e.ckpt", {"x": Payload(os.system, ("true",))}, "zip")
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(path)
    read_checkpoint(write(tmp_path / "ok.ckpt", {"x": 1}, "zip"))
    read_checkpoint(write(tmp_path / "ok.pkl", {"x": torch.ones(2)}, "pickle2"))  # re-entrant
    assert set(map(repr, torch.serialization.get_safe_globals())) == before


def test_name_only_global_cannot_be_called(tmp_path):
    # Lightning callback classes may appear as dict keys, but calling one is refused.
    class Evil:
        def __reduce__(self):
            return ModelCheckpoint, ("payload",)

    with fake_modules(
        **{"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": ModelCheckpoint}
    ):
        path = write(tmp_path / "call.ckpt", {"callbacks": {ModelCheckpoint: Evil()}}, "zip")
    with pytest.raises(UnsafeCheckpointError, match="refused to call global 'pytorch_lightning"):
        read_checkpoint(path)


def test_handcrafted_pickles_are_refused(tmp_path):
    # NEWOBJ on a name-only reference (typing.Any) and BUILD on a type object (monkeypatching).
    newobj = tmp_path / "newobj.pkl"
    newobj.write_bytes(b"\x80\x02ctyping\nAny\n)\x81.")
    with pytest.raises(UnsafeCheckpointError, match="refused to instantiate global 'typing.Any'"):
        read_checkpoint(newobj)
    build = tmp_path / "build.pkl"
    build.write_bytes(b"\x80\x02c__builtin__\ndict\nN}X\x04\x00\x00\x00copyK\x01s\x86b}.")
    with pytest.raises(UnsafeCheckpointError, match="build.pkl"):
        read_checkpoint(build)
    # A protocol-4 STACK_GLOBAL whose names come from the memo is still resolved and refused.
    stack = tmp_path / "stack.pkl"
    stack.write_bytes(b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x04true\x85R.")
    with pytest.raises(UnsafeCheckpointError, match="refused to load global 'os.system'"):
        read_checkpoint(stack)


# ---------------------------------------------------------------------------------------------
# (2) Official checkpoint layouts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle2"])
def test_lightning_114_checkpoint(tmp_path, how, state_dict):
    fakes = {
        PL_PARSING: AttributeDict,
        PL_CKPT: ModelCheckpoint,
        f"{SACRED}.ReadOnlyDict": ReadOnlyDict,
        f"{SACRED}.ReadOnlyList": ReadOnlyList,
    }
    modules_before = set(sys.modules)
    with fake_modules(**fakes):
        config = ReadOnlyDict(
            {"vit": "vit_base_patch16_224", "num_frames": 3, "max_text_len": 40}
            | {"loss_names": ReadOnlyDict({"itm": 1, "mlm": 1}), "lr_mult": ReadOnlyList([1, 2.5])}
        )
        ckpt = {
            "epoch": 3,
            "global_step": 100,
            "pytorch-lightning_version": "1.1.4",
            "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25)} | {"x": None}},
            "optimizer_states": [{"state": {0: {"step": 7}}, "param_groups": [{"lr": 1e-4}]}],
            "lr_schedulers": [{"last_epoch": 9, "lr_lambdas": [None]}],
            "native_amp_scaling_state": {"scale": 65536.0, "_growth_tracker": 12},
            "state_dict": state_dict,
            "hparams_name": "kwargs",
            "hyper_parameters": AttributeDict(config=config),
        }
        path = write(tmp_path / "all-in-one-base.ckpt", ckpt, how)
    for dotted, cls in fakes.items():  # the fakes are gone: loading cannot use them
        module_name, _, qualname = dotted.rpartition(".")
        assert getattr(sys.modules.get(module_name), qualname, None) is not cls

    got = read_checkpoint(path)

    new_modules = {m for m in set(sys.modules) - modules_before if not m.startswith("encodings.")}
    assert new_modules == set()  # nothing imported to read it (bar stdlib codecs)
    assert got["epoch"] == 3 and got["global_step"] == 100
    assert got["pytorch-lightning_version"] == "1.1.4"
    assert type(got["hyper_parameters"]) is dict
    assert type(got["hyper_parameters"]["config"]) is dict
    assert got["hyper_parameters"]["config"] == {
        "vit": "vit_base_patch16_224",
        "num_frames": 3,
        "max_text_len": 40,
        "loss_names": {"itm": 1, "mlm": 1},
        "lr_mult": [1, 2.5],
    }
    assert type(got["hyper_parameters"]["config"]["lr_mult"]) is list
    callback = got["callbacks"][PL_CKPT]
    assert callback["best_model_score"].item() == 0.25 and callback["x"] is None
    assert got["optimizer_states"][0]["state"][0]["step"] == 7
    assert got["native_amp_scaling_state"] == {"scale": 65536.0, "_growth_tracker": 12}
    assert_same_tensors(got["state_dict"], state_dict)
    sd = got["state_dict"]
    assert list(sd) == list(state_dict)  # file order kept
    if how != "pickle2":  # torch.save keeps storage sharing of views
        assert sd["rank_output.weight"].untyped_storage().data_ptr() == (
            sd["itm_score.fc.weight"].untyped_storage().data_ptr()
        )
    assert read_state_dict(path).keys() == state_dict.keys()


def test_gpu_saved_checkpoint_reads_on_cpu(tmp_path, state_dict):
    # Official checkpoints were saved from CUDA tensors; the storage location is in the pickle.
    cpu = write(tmp_path / "cpu.ckpt", {"state_dict": state_dict}, "zip")

    def to_cuda(name, data):
        if name.endswith("data.pkl"):
            assert b"X\x03\x00\x00\x00cpu" in data
            data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
        return [(name, data)]

    gpu = _rewrite_zip(cpu, tmp_path / "gpu.ckpt", to_cuda)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu, weights_only=True)  # what a naive load does on a CPU machine
    assert_same_tensors(read_state_dict(gpu), state_dict)


def test_svitt_checkpoint_with_real_omegaconf(tmp_path, state_dict):
    cfg = OmegaConf.create(
        {
            "video_input": {"num_frames": 4, "sample_type": "rand", "reader": "decord"},
            "vision_encoder_args": {"token_keep_rate": 0.7, "attn_block_size": 56},
            "text_encoder": "bert-base-uncased",
            "batch_size": {"image": 128, "video": 32},
            "schedule": [1, 2.5, "cosine", None, True],
            "num_frames_test": "${video_input.num_frames}",
            "output_dir": "???",
            "empty": {},
            "nested": [{"a": 1}, [2, 3]],
        }
    )
    # What AdamW.state_dict() holds (building a real optimizer costs seconds of imports).
    exp_avg = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    optimizer_state = {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": exp_avg, "exp_avg_sq": exp_avg**2}},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "amsgrad": False, "params": [0]}],
    }
    ckpt = {
        "model": state_dict,
        "optimizer": optimizer_state,
        "scheduler": {"last_epoch": 5},
        "scaler": {"scale": 1024.0},
        "config": cfg,
        "epoch": 2,
        "global_step": 4000,
        "args": argparse.Namespace(seed=42, data=Path("/data/anet")),
        "np_array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "np_scalar": np.float64(0.5),
        "np_int": np.int64(7),
    }
    path = write(tmp_path / "ckpt_best.pth", ckpt, "zip")

    got = read_checkpoint(path)

    assert got["config"] == OmegaConf.to_container(cfg, resolve=False)
    assert got["config"]["video_input"]["num_frames"] == 4
    assert got["config"]["num_frames_test"] == "${video_input.num_frames}"
    assert got["config"]["output_dir"] == "???"
    assert got["args"] == {"seed": 42, "data": "/data/anet"}
    assert torch.equal(got["np_array"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert got["np_scalar"] == 0.5 and type(got["np_scalar"]) is float
    assert got["np_int"] == 7 and type(got["np_int"]) is int
    assert torch.equal(got["optimizer"]["state"][0]["exp_avg"], exp_avg)
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert_same_tensors(read_state_dict(path), state_dict)
    assert_same_tensors(read_state_dict(path, mmap=True), state_dict)


def test_result_is_plain(tmp_path, state_dict):
    cfg = OmegaConf.create({"a": [1, {"b": 2}]})
    ckpt = {
        "cfg": cfg,
        "param": torch.nn.Parameter(torch.ones(2)),
        "size": torch.Size([2, 3]),
        "set": {3, 1, 2},
        "dtype": torch.float16,
        "od": torch.nn.Linear(2, 2).state_dict(),
        "storage": torch.arange(3, dtype=torch.int16).untyped_storage(),
        "cycle": [],
    }
    ckpt["cycle"].append(ckpt["cycle"])
    got = read_checkpoint(write(tmp_path / "plain.pt", ckpt, "zip"))

    def check(obj):
        if isinstance(obj, dict):
            assert type(obj) is dict
            for k, v in obj.items():
                check(k)
                check(v)
        elif isinstance(obj, (list, tuple)):
            assert type(obj) in (list, tuple)
            for v in obj:
                check(v)
        elif isinstance(obj, torch.Tensor):
            assert type(obj) is torch.Tensor
        else:
            assert obj is None or type(obj) in (bool, int, float, complex, str, bytes), obj

    assert got["cycle"][0] is got["cycle"]  # shared and cyclic references survive
    got.pop("cycle")
    check(got)
    assert torch.equal(got["storage"], torch.tensor([0, 0, 1, 0, 2, 0], dtype=torch.uint8))
    assert got["size"] == (2, 3) and got["set"] == [1, 2, 3] and got["dtype"] == "torch.float16"
    assert torch.equal(got["param"], torch.ones(2)) and not got["param"].requires_grad
    again = to_plain(got)  # idempotent on plain data
    assert again["cfg"] == got["cfg"] == {"a": [1, {"b": 2}]}
    assert torch.equal(again["od"]["weight"], got["od"]["weight"])


# ---------------------------------------------------------------------------------------------
# (3) safetensors, plain state dicts, sharded folders
# ---------------------------------------------------------------------------------------------


def test_safetensors_and_plain_state_dicts(tmp_path, state_dict):
    contiguous = {k: v.clone() for k, v in state_dict.items()}  # safetensors refuses views
    save_file(contiguous, tmp_path / "w.safetensors")
    assert_same_tensors(read_checkpoint(tmp_path / "w.safetensors"), contiguous)
    assert_same_tensors(read_state_dict(tmp_path / "w.safetensors"), contiguous)
    before = (tmp_path / "w.safetensors").read_bytes()
    mapped = read_checkpoint(tmp_path / "w.safetensors", mmap=True)
    assert_same_tensors(mapped, contiguous)
    mapped["half"].add_(1)  # copy-on-write: the file is untouched
    assert (tmp_path / "w.safetensors").read_bytes() == before

    assert_same_tensors(
        read_state_dict(write(tmp_path / "flat.bin", state_dict, "zip")), state_dict
    )

    wrapped = {f"module.{k}": v for k, v in state_dict.items()}
    path = write(tmp_path / "ddp.pth", {"model": wrapped, "epoch": 1}, "zip")
    assert_same_tensors(read_state_dict(path, prefixes_to_strip=("module.",)), state_dict)
    path = write(tmp_path / "ds.pt", {"module": state_dict}, "legacy")
    assert_same_tensors(read_state_dict(path), state_dict)

    clash = write(
        tmp_path / "clash.pth", {"model": {"a": torch.ones(1), "m.a": torch.ones(1)}}, "zip"
    )
    with pytest.raises(CheckpointReadError, match=r"clash\.pth'.*'m\.a'.*both become 'a'"):
        read_state_dict(clash, prefixes_to_strip=["m."])
    nodict = write(tmp_path / "nodict.pth", {"epoch": 1, "config": {"a": 1}}, "zip")
    with pytest.raises(CheckpointReadError, match=r"nodict\.pth': no state dict found"):
        read_state_dict(nodict)
    notensor = write(tmp_path / "nt.pth", {"model": {"w": torch.ones(1), "extra": "x"}}, "zip")
    with pytest.raises(CheckpointReadError, match=r"entry 'extra' is a str, not a tensor"):
        read_state_dict(notensor)


def _shard(state: dict, n: int) -> list[dict]:
    keys = list(state)
    return [{k: state[k].clone() for k in keys[i::n]} for i in range(n)]


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_folder(tmp_path, kind, state_dict):
    shards = _shard(state_dict, 3)
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-00003.{kind}"
        if kind == "safetensors":
            save_file(shard, tmp_path / name)
        else:
            torch.save(shard, tmp_path / name)
        weight_map.update({key: name for key in shard})
    index = (
        "model.safetensors.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
    )
    (tmp_path / index).write_text(
        json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map})
    )

    got = read_sharded(tmp_path)
    assert set(got) == set(state_dict)
    assert_same_tensors(
        {k: got[k] for k in state_dict}, {k: v.contiguous() for k, v in state_dict.items()}
    )
    assert read_sharded(tmp_path / index).keys() == got.keys()
    assert_same_tensors(read_sharded(tmp_path, mmap=True), state_dict)

    # A tensor listed in the index but absent from its shard.
    first = next(iter(weight_map))
    weight_map_bad = dict(weight_map, ghost=weight_map[first])
    (tmp_path / index).write_text(json.dumps({"weight_map": weight_map_bad}))
    with pytest.raises(CheckpointReadError, match=r"missing, e\.g\. 'ghost'"):
        read_sharded(tmp_path)
    # A shard outside the folder.
    for bad in ("../outside.bin", "/etc/passwd", "sub/x.bin", ".."):
        (tmp_path / index).write_text(json.dumps({"weight_map": {"a": bad}}))
        with pytest.raises(CheckpointReadError, match=f"shard '{re.escape(bad)}' is not a file"):
            read_sharded(tmp_path)


def test_sharded_hub_cache_layout_with_symlinks(tmp_path, state_dict):
    # snapshots/<rev>/ holds symlinks into blobs/, as in the Hugging Face cache.
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    weight_map = {}
    for i, shard in enumerate(_shard(state_dict, 2), start=1):
        name = f"model-{i:05d}-of-00002.safetensors"
        save_file(shard, blobs / f"blob{i}")
        (snapshot / name).symlink_to(blobs / f"blob{i}")
        weight_map.update({key: name for key in shard})
    (blobs / "index").write_text(json.dumps({"weight_map": weight_map}))
    (snapshot / "model.safetensors.index.json").symlink_to(blobs / "index")
    assert_same_tensors(read_sharded(snapshot), state_dict)


def test_sharded_single_file_and_errors(tmp_path, state_dict):
    torch.save(state_dict, tmp_path / "pytorch_model.bin")
    assert_same_tensors(read_sharded(tmp_path), state_dict)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointReadError, match=r"empty': no weights found"):
        read_sharded(empty)
    with pytest.raises(CheckpointReadError, match="no such folder"):
        read_sharded(tmp_path / "missing")
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"a": Payload(os.system, ("true",))}, evil / "pytorch_model-00001-of-00001.bin")
    (evil / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"a": "pytorch_model-00001-of-00001.bin"}})
    )
    with pytest.raises(UnsafeCheckpointError, match=r"00001\.bin': refused to load global"):
        read_sharded(evil)
    (evil / "pytorch_model.bin.index.json").write_text("{not json")
    with pytest.raises(CheckpointReadError, match=r"index\.json': unreadable index JSON"):
        read_sharded(evil)


# ---------------------------------------------------------------------------------------------
# (4) Broken files
# ---------------------------------------------------------------------------------------------


def test_broken_files_raise_checkpoint_read_error(tmp_path, state_dict):
    good_zip = write(tmp_path / "good.ckpt", {"state_dict": state_dict}, "zip").read_bytes()
    good_legacy = write(tmp_path / "good.pth", {"state_dict": state_dict}, "legacy").read_bytes()
    save_file({"w": torch.ones(64)}, tmp_path / "good.safetensors")
    good_st = (tmp_path / "good.safetensors").read_bytes()
    cases = {
        "zero.ckpt": b"",
        "truncated.ckpt": good_zip[: len(good_zip) // 2],
        "truncated_tail.ckpt": good_zip[:-30],
        "truncated_legacy.pth": good_legacy[: len(good_legacy) - 100],
        "truncated_pickle.pth": good_legacy[:40],
        "random.bin": bytes(range(256)) * 4,
        "text.ckpt": b"this is not a checkpoint\n",
        "json.ckpt": b'{"state_dict": {}}',
        "html.bin": b"<!DOCTYPE html><html>Google Drive - virus scan warning</html>",
        "truncated.safetensors": good_st[: len(good_st) - 10],
        "header.safetensors": good_st[:8] + b"{garbage" + good_st[16:],
        "zip_no_pickle.ckpt": _zip_with(tmp_path, "archive/other.txt"),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointReadError) as info:
            read_checkpoint(path)
        assert str(info.value).startswith(f"'{path}': "), str(info.value)
        assert info.value.path == str(path)

    with pytest.raises(CheckpointReadError, match="no such file"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointReadError, match="is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointReadError, match="top-level object is a Tensor, not a dict"):
        read_checkpoint(write(tmp_path / "tensor.pt", torch.ones(2), "zip"))
    with pytest.raises(CheckpointReadError, match="protocol 5"):
        read_checkpoint(write(tmp_path / "p5.pkl", {"a": 1}, "pickle5"))


def _zip_with(tmp_path: Path, member: str) -> bytes:
    import zipfile

    path = tmp_path / "_tmp.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, "hello")
    return path.read_bytes()
