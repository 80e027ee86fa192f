"""Keys of `audio_dataset`'s disk caches: a hash of everything the cached
tensors depend on (the files' paths, sizes, modification times and, for recently
modified files, contents; labels, clips, sample rate and clip length; the
`features` callable's code, config and weights), so that a changed file, list or
setting never reads an old cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import types
import uuid
import warnings

import numpy as np

from keras_filterprune._version import __version__
from keras_filterprune.audio.io import import_soundfile, import_soxr
from keras_filterprune.exceptions import FilterPruneWarning

#: Files modified less than this many seconds ago may be rewritten within one tick
#: of a coarse file-system clock, keeping size and time: their bytes are hashed too.
_RACY_SECONDS = 3.0


def _file_stamp(path, now):
    """What a cached clip of `path` depends on: the path, size and modification
    time, and the content hash while the time is too recent to tell rewrites
    apart."""
    stat = os.stat(path)
    stamp = [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]
    if now - stat.st_mtime < _RACY_SECONDS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(functools.partial(f.read, 1 << 20), b""):
                digest.update(block)
        stamp.append(digest.hexdigest())
    return stamp


def _code_digest(code):
    """The bytecode, constants and names of `code` and of the code inside it."""
    digest = hashlib.sha256(code.co_code + repr(code.co_names).encode())
    for const in code.co_consts:
        part = _code_digest(const) if isinstance(const, types.CodeType) else const
        digest.update(repr(part).encode())
    return digest.hexdigest()


def _code_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class _Fingerprint:
    """A JSON-able description of what the `features` callable computes: a
    layer's class, code, config (without its name) and weights; a function's
    code, defaults, closure and the globals it reads; an object's attributes.
    An object met again is described by its first visit's number. What cannot
    be described gets a fresh random value (listed in `undescribed`): the cache
    is then never reused rather than possibly stale."""

    def __init__(self):
        self.seen = {}  # id → (visit number, the object, kept alive)
        self.undescribed = []

    def unknown(self, obj):
        self.undescribed.append(type(obj).__qualname__)
        return uuid.uuid4().hex

    def __call__(self, obj, depth=0):
        if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
            return repr(obj) if isinstance(obj, (bytes, float)) else obj
        if id(obj) in self.seen:
            return ["<seen>", self.seen[id(obj)][0]]
        self.seen[id(obj)] = (len(self.seen), obj)
        if depth > 50:
            return self.unknown(obj)
        try:
            return self._describe(obj, lambda item: self(item, depth + 1))
        except Exception:  # a property or conversion that fails
            return self.unknown(obj)

    def _describe(self, obj, inner):
        if isinstance(obj, (types.ModuleType, type, types.BuiltinFunctionType)):
            return repr(obj)
        if isinstance(obj, np.ufunc):
            return repr(obj)
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
            return [inner(item) for item in items]
        if isinstance(obj, dict):
            items = sorted(obj.items(), key=lambda item: repr(item[0]))
            return [[repr(k), inner(v)] for k, v in items]
        if isinstance(obj, (np.ndarray, np.generic)) or (
            hasattr(obj, "shape") and hasattr(obj, "numpy")
        ):
            array = np.ascontiguousarray(obj.numpy() if hasattr(obj, "numpy") else obj)
            digest = hashlib.sha256(array.tobytes()).hexdigest()
            return [str(array.dtype), list(array.shape), digest]
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if isinstance(obj, types.FunctionType):
            code = obj.__code__
            names = sorted(_code_names(code) & set(obj.__globals__))
            cells = [c.cell_contents for c in obj.__closure__ or ()]
            return {
                "function": f"{obj.__module__}.{obj.__qualname__}",
                "code": _code_digest(code),
                "defaults": inner([obj.__defaults__, obj.__kwdefaults__]),
                "closure": inner(cells),
                "globals": inner({n: obj.__globals__[n] for n in names}),
            }
        if isinstance(obj, types.MethodType):
            return [inner(obj.__func__), inner(obj.__self__)]
        if isinstance(obj, functools.partial):
            return [kind, inner([obj.func, obj.args, obj.keywords])]
        if hasattr(obj, "python_function"):  # a tf.function
            return [kind, inner(obj.python_function)]
        if hasattr(obj, "get_config") and hasattr(obj, "get_weights"):  # Keras
            config = dict(obj.get_config())
            config.pop("name", None)
            weights = [np.asarray(w) for w in obj.get_weights()]
            return [kind, inner(type(obj).call), inner(config), inner(weights)]
        if hasattr(obj, "__dict__"):
            return [kind, inner(vars(obj))]
        if type(obj).__repr__ is object.__repr__:
            return self.unknown(obj)
        return repr(obj)


def cache_prefix(cache, key):
    """The `tf.data` cache files for `key`: inside `cache` when it is a directory,
    else `cache` + the key; the directory must be writable unless they are
    complete already."""
    cache = os.fspath(cache)
    if os.path.isdir(cache):
        prefix = os.path.join(cache, f"audio_dataset-{key}")
    else:
        prefix = f"{cache}-{key}"
    directory = os.path.dirname(os.path.abspath(prefix))
    complete = os.path.isfile(prefix + ".index")
    if complete:
        _check_readable(prefix)
    if not complete and not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(
            f"`cache`: cannot write the cache files '{prefix}.*' in '{directory}' "
            "(permission denied). Pass a writable location for `cache` (e.g. a "
            "directory under `tempfile.gettempdir()`), cache='memory', or "
            f"cache=None. Received: cache='{cache}'"
        )
    return prefix


def cache_key(paths, labels, examples, sample_rate, clip_samples, features):
    """A hash of everything the cached tensors depend on."""
    sf, soxr = import_soundfile(), import_soxr()
    now = time.time()
    fingerprint = _Fingerprint()
    material = {
        "versions": [__version__, sf.__version__, sf.__libsndfile_version__],
        "soxr": soxr.__version__,
        "files": [_file_stamp(p, now) for p in paths],
        "labels": labels,
        "examples": examples,
        "sample_rate": sample_rate,
        "clip_samples": clip_samples,
        "features": fingerprint(features),
    }
    if fingerprint.undescribed:
        kinds = sorted(set(fingerprint.undescribed))[:5]
        warnings.warn(
            f"`features` holds objects ({', '.join(kinds)}) that the disk cache's "
            "key cannot describe, so later audio_dataset calls will not reuse this "
            "cache. Pass a Keras layer or a function of plain values, or use "
            "cache='memory'.",
            FilterPruneWarning,
            stacklevel=3,
        )
    text = json.dumps(material, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _check_readable(prefix):
    """A complete cache whose files were damaged since (a disk error, an edit)
    is refused now, naming them, rather than failing in the first batch."""
    import tensorflow as tf

    try:
        tf.train.load_checkpoint(prefix)  # the bundle format `Dataset.cache` writes
    except (tf.errors.OpError, ValueError) as e:
        why = e.message if isinstance(e, tf.errors.OpError) else str(e)
        raise ValueError(
            f"`cache`: the cache files '{prefix}.*' are damaged ({why}). Delete "
            "them (they are rebuilt from the audio files) or pass another `cache`."
        ) from None
