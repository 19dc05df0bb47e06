"""Read a PyTorch .pth state dict safely, as numpy arrays.

torch is an optional extra (`pip install -r requirements-torch.txt`),
imported inside `read_state_dict` and nowhere else in the package.

Safety: `torch.load(path, map_location="cpu", weights_only=True)` only
rebuilds tensors, storages, plain containers and numbers/strings; any other
global in the pickle (the way a .pth file can run code) makes it fail
instead of executing. It reads the zip format and the legacy one of the
2018-2020 releases of AdaptSegNet, ADVENT, BDL and CRST.
"""

import os
import pickle

import numpy as np

from tf_pixintra.errors import DataError

TORCH_MISSING = ("reading PyTorch checkpoints needs torch: pip install -r "
                 "requirements-torch.txt")
# Wrappers some training scripts save around the state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _weights_only_reason(error):
    """torch's reason for a weights_only failure, not its boilerplate: the
    line naming the unsafe GLOBAL, or the one after "WeightsUnpickler error:"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return line[:200]
    for before, line in zip(lines, lines[1:]):
        if before.endswith("WeightsUnpickler error:"):
            return line[:200]
    return _first_line(error)


def _unwrap(obj, path, torch):
    """The {str: tensor} state dict inside what torch.load returned."""
    if isinstance(obj, dict) and obj and not any(
            isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key], path, torch)
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: holds a {type(obj).__name__}, not a "
                        "PyTorch state dict (a dict of named tensors)")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise DataError(f"{path}: state dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{path}: state dict entry {key!r} is a "
                            f"{type(value).__name__}, not a tensor")
    return obj


def read_state_dict(path):
    """{key: float32 numpy array} of the state dict in the .pth file `path`
    (integer tensors, BN `num_batches_tracked`, as int64).

    DataError, one line naming the file: torch missing, no such file, not a
    checkpoint, a pickle holding more than tensors, or not a state dict.
    """
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DataError(TORCH_MISSING) from None
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):
            raise DataError(
                f"{path}: refused: the pickle holds more than tensors and "
                "containers, and loading it could run code from the file "
                f"(torch.load weights_only=True: {_weights_only_reason(e)})"
            ) from None
        raise DataError(f"{path}: not a PyTorch checkpoint "
                        f"(unpickling: {_weights_only_reason(e)})") from None
    except Exception as e:  # pylint: disable=broad-except
        raise DataError(f"{path}: not a PyTorch checkpoint "
                        f"({type(e).__name__}: {_first_line(e)})") from None
    state = _unwrap(obj, path, torch)
    out = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            out[key] = tensor.to(torch.float32).numpy()
        else:
            out[key] = tensor.numpy().astype(np.int64)
    return out
