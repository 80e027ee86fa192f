"""Tests of keras_filterprune/models/ (vggish.py, dcase.py, cifar.py, panns.py).

Published sizes (Li et al. 2017, Table 1) count the weights and biases of the conv
and fully connected layers (no BatchNormalization), and FLOPs as the
multiply-accumulates of conv and fully connected layers for one 32×32 image (no
bias, BN, ReLU or pooling). A published value with `d` significant digits is met
when the count rounds to it: |count - published| <= half a unit of its last digit.
"""

import math
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_filterprune.models import (
    VGGISH_NAME_MAP,
    ShortcutPad,
    VGGishPostprocessor,
    cnn14,
    dcase21_net,
    load_vggish_checkpoint,
    resnet_cifar,
    vgg16_cifar,
    vggish,
)

L = keras.layers


def _rounds_to(count, published, digits):
    half_unit = 0.5 * 10 ** (math.floor(math.log10(published)) - digits + 1)
    return abs(count - published) <= half_unit


def _conv_dense_params(model):
    return sum(
        layer.count_params()
        for layer in model.layers
        if isinstance(layer, (L.Conv2D, L.Dense))
    )


def _conv_dense_macs(model):
    """MACs of conv and dense layers, from the profiler's per-layer counts."""
    from keras_filterprune.profile import count_macs, profile_model

    profile = profile_model(model)
    macs = sum(
        layer.macs
        for layer in profile.layers
        if layer.class_name in ("Conv2D", "Dense")
    )
    assert count_macs(model) >= macs  # the total adds BN and pooling
    return macs


# --- DCASE21_Net ---------------------------------------------------------------------


def test_dcase21_net_has_46246_params():
    model = dcase21_net()
    assert model.count_params() == 46246
    assert tuple(model.output.shape) == (None, 10)
    assert model.get_layer("flatten").output.shape[1:] == (64,)  # 2 x 1 x 32
    for name in ("conv1", "conv2", "conv3"):
        conv = model.get_layer(name)
        assert conv.kernel_size == (7, 7) and conv.padding == "same" and conv.use_bias
    assert model.get_layer("pool1").pool_size == (5, 5)
    assert model.get_layer("pool2").pool_size == (4, 100)
    rates = [layer.rate for layer in model.layers if isinstance(layer, L.Dropout)]
    assert rates == [0.3, 0.3, 0.3]
    assert model.get_layer("predictions").activation.__name__ == "softmax"


# --- Li et al.'s CIFAR networks -----------------------------------------------------


def test_vgg16_cifar_size_matches_li_et_al():
    model = vgg16_cifar()
    convs = [layer for layer in model.layers if isinstance(layer, L.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    assert (
        len(
            [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
        )
        == 14
    )
    # 14,714,688 conv + 262,656 fc1 + 5,130 fc2 weights and biases; + 4 x 4,736 BN.
    assert _conv_dense_params(model) == 14_982_474
    assert model.count_params() == 15_001_418
    assert _rounds_to(_conv_dense_params(model), 1.5e7, 2)
    macs = _conv_dense_macs(model)
    assert macs == 313_463_808
    assert _rounds_to(macs, 3.13e8, 3)


@pytest.mark.parametrize(
    "depth, params, macs, published_params, published_macs",
    [
        (56, 848_954, 125_485_696, 8.5e5, 1.25e8),
        (110, 1_719_866, 252_887_680, 1.72e6, 2.53e8),
    ],
)
def test_resnet_cifar_size_matches_li_et_al(
    depth, params, macs, published_params, published_macs
):
    model = resnet_cifar(depth)
    convs = [layer for layer in model.layers if isinstance(layer, L.Conv2D)]
    assert len(convs) == depth - 1  # + the classifier = depth weighted layers
    assert _conv_dense_params(model) == params
    assert _rounds_to(params, published_params, 2 if depth == 56 else 3)
    counted = _conv_dense_macs(model)
    assert counted == macs
    assert _rounds_to(counted, published_macs, 3)


def test_resnet_cifar_shortcuts():
    model_a = resnet_cifar(20)
    pads = [layer for layer in model_a.layers if isinstance(layer, ShortcutPad)]
    assert [(p.name, p.strides, p.pad_before, p.pad_after) for p in pads] == [
        ("stage2_block1_shortcut", 2, 8, 8),
        ("stage3_block1_shortcut", 2, 16, 16),
    ]
    model_b = resnet_cifar(20, shortcut="B")
    assert not any(isinstance(layer, ShortcutPad) for layer in model_b.layers)
    projection = model_b.get_layer("stage3_block1_shortcut_conv")
    assert projection.kernel_size == (1, 1) and projection.strides == (2, 2)
    extra = (16 * 32 + 32 * 64) + 4 * (32 + 64)  # 1x1 convs + their BN
    assert model_b.count_params() - model_a.count_params() == extra
    assert model_a.name == "resnet20_cifar"


def test_shortcut_pad_semantics_and_config(rng):
    x = rng.standard_normal((2, 7, 9, 3)).astype("float32")
    layer = ShortcutPad(strides=2, pad_before=1, pad_after=2)
    y = keras.ops.convert_to_numpy(layer(x))
    expected = np.pad(x[:, ::2, ::2, :], [(0, 0), (0, 0), (0, 0), (1, 2)])
    np.testing.assert_array_equal(y, expected)
    assert layer.compute_output_shape((None, 7, 9, 3)) == (None, 4, 5, 6)
    # Spatial size equals that of a stride-2 "same" convolution.
    conv = L.Conv2D(1, 3, strides=2, padding="same")
    assert conv.compute_output_shape((None, 7, 9, 3))[1:3] == (4, 5)

    config = layer.get_config()
    assert config["strides"] == 2 and config["pad_before"] == 1
    assert config["pad_after"] == 2
    clone = ShortcutPad.from_config(config)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), y)

    anisotropic = ShortcutPad(strides=(1, 3))
    assert tuple(anisotropic(x).shape) == (2, 7, 3, 3)
    assert ShortcutPad.from_config(anisotropic.get_config()).strides == (1, 3)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: resnet_cifar(57), "`depth` must be 6n \\+ 2"),
        (lambda: resnet_cifar(20, shortcut="C"), "`shortcut` must be 'A' or 'B'"),
        (lambda: vgg16_cifar(num_classes=0), "`num_classes` must be a positive int"),
        (lambda: dcase21_net(input_shape=(40, 500)), "`input_shape` must be a tuple"),
        (lambda: ShortcutPad(strides=0), "`strides` must be a positive int"),
        (lambda: ShortcutPad(pad_before=-1), "`pad_before` must be a non-negative"),
        (lambda: vggish(pooling="sum"), "`pooling` must be None, 'avg' or 'max'"),
        (
            lambda: vggish(include_top=False, num_classes=3),
            "`pooling` must be 'avg' or 'max' when",
        ),
        (lambda: vggish(weights="audioset"), "weights are never downloaded"),
        (lambda: cnn14(weights="Cnn14_mAP=0.431.pth"), "never downloaded"),
        (lambda: cnn14(clip_samples=3200), "`clip_samples` must be at least"),
        (lambda: cnn14(clip_samples=1.5), "`clip_samples` must be None or"),
        (lambda: cnn14(dropout=1.0), "`dropout` must be in"),
        (lambda: cnn14(num_classes=0), "`num_classes` must be a positive int"),
    ],
)
def test_invalid_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


# --- VGGish --------------------------------------------------------------------------


def test_vggish_architecture():
    model = vggish()
    assert model.count_params() == 72_141_184
    assert tuple(model.output.shape) == (None, 128)
    assert model.get_layer("fc2").activation.__name__ == "linear"
    names = [layer.name for layer in model.layers[1:]]
    assert names == [
        "conv1", "pool1", "conv2", "pool2", "conv3_1", "conv3_2", "pool3",
        "conv4_1", "conv4_2", "pool4", "flatten", "fc1_1", "fc1_2", "fc2",
    ]  # fmt: skip
    assert set(VGGISH_NAME_MAP) <= set(names)
    assert model.get_layer("flatten").output.shape[1:] == (6 * 4 * 512,)

    headless = vggish(include_top=False)
    assert tuple(headless.output.shape) == (None, 6, 4, 512)
    classifier = vggish(num_classes=7, input_shape=(16, 16, 1))
    assert tuple(classifier.output.shape) == (None, 7)
    assert classifier.get_layer("embedding_relu").input.shape[1:] == (128,)


def _write_checkpoint(prefix, model, rng, skip=(), reshape=None):
    """Writes the official variable names with random values (TF2 SaveV2)."""
    names, values, expected = [], [], {}
    for layer_name, scope in VGGISH_NAME_MAP.items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue
        for suffix, weight in (("weights", layer.kernel), ("biases", layer.bias)):
            name = f"{scope}/{suffix}"
            if name in skip:
                continue
            shape = reshape.get(name, weight.shape) if reshape else weight.shape
            value = rng.random(shape, dtype=np.float32) - 0.5
            names.append(name)
            values.append(tf.constant(value))
            expected[weight.path] = value
    names.append("global_step")  # an extra variable is ignored
    values.append(tf.constant(7, tf.int64))
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=values,
    )
    return expected


def _small_vggish(**kwargs):
    return vggish(input_shape=(16, 16, 1), **kwargs)


def test_load_vggish_checkpoint_round_trip(tmp_path, rng):
    model = _small_vggish()
    prefix = os.fspath(tmp_path / "vggish_model.ckpt")
    expected = _write_checkpoint(prefix, model, rng)
    assert len(expected) == 18  # 9 layers x (weights, biases)
    loaded = load_vggish_checkpoint(model, prefix)
    assert loaded == list(VGGISH_NAME_MAP)
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), expected[weight.path])

    # weights= loads at construction; a classifier head stays initialised.
    with_head = _small_vggish(num_classes=3, weights=prefix)
    conv = with_head.get_layer("conv3_2").kernel
    np.testing.assert_array_equal(conv.numpy(), expected[conv.path])
    # A model nested in another one is found too.
    outer_input = keras.Input((16, 16, 1))
    inner = _small_vggish(include_top=False)
    outer = keras.Model(outer_input, L.GlobalAveragePooling2D()(inner(outer_input)))
    assert load_vggish_checkpoint(outer, prefix) == list(VGGISH_NAME_MAP)[:6]


def test_load_vggish_checkpoint_v1_format(tmp_path, rng):
    model = _small_vggish(include_top=False)
    prefix = os.fspath(tmp_path / "vggish_model.ckpt")
    expected = {}
    with tf.Graph().as_default():
        variables = []
        for layer_name in (
            "conv1",
            "conv2",
            "conv3_1",
            "conv3_2",
            "conv4_1",
            "conv4_2",
        ):
            layer = model.get_layer(layer_name)
            for suffix, weight in (("weights", layer.kernel), ("biases", layer.bias)):
                value = rng.standard_normal(weight.shape).astype("float32")
                name = f"{VGGISH_NAME_MAP[layer_name]}/{suffix}"
                variables.append(tf.compat.v1.Variable(value, name=name))
                expected[weight.path] = value
        saver = tf.compat.v1.train.Saver(
            variables, write_version=tf.compat.v1.train.SaverDef.V1
        )
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False)
    assert os.path.isfile(prefix)  # V1: one file, no .index
    load_vggish_checkpoint(model, prefix)
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), expected[weight.path])


def test_load_vggish_checkpoint_errors_name_variables(tmp_path, rng):
    model = _small_vggish()
    before = [w.numpy().copy() for w in model.weights]
    prefix = os.fspath(tmp_path / "bad.ckpt")
    _write_checkpoint(
        prefix,
        model,
        rng,
        skip=("vggish/conv2/biases",),
        reshape={"vggish/fc2/weights": (4096, 64)},
    )
    with pytest.raises(ValueError) as info:
        load_vggish_checkpoint(model, prefix)
    message = str(info.value)
    assert "variable 'vggish/conv2/biases' (for layer 'conv2') is missing" in message
    assert (
        "variable 'vggish/fc2/weights' has shape (4096, 64) but layer "
        "'fc2' expects (4096, 128)" in message
    )
    for weight, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)  # nothing assigned

    with pytest.raises(ValueError, match="Could not read the VGGish checkpoint"):
        load_vggish_checkpoint(model, os.fspath(tmp_path / "nothing.ckpt"))
    with pytest.raises(ValueError, match="has none of the VGGish layers"):
        load_vggish_checkpoint(keras.Sequential([L.Dense(2, name="dense")]), prefix)


@pytest.mark.slow
def test_load_full_size_vggish_checkpoint(tmp_path, rng):
    """The official shapes: 72 M parameters, a 288 MB checkpoint."""
    prefix = os.fspath(tmp_path / "vggish_model.ckpt")
    model = vggish()
    expected = _write_checkpoint(prefix, model, rng)
    load_vggish_checkpoint(model, prefix)
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), expected[weight.path])


def _official_postprocess(embeddings, eigen_vectors, means):
    """vggish_postprocess.Postprocessor.postprocess, verbatim maths."""
    pca_applied = np.dot(eigen_vectors, (embeddings.T - means.reshape(-1, 1))).T
    clipped = np.clip(pca_applied, -2.0, 2.0)
    return ((clipped - -2.0) * (255.0 / (2.0 - -2.0))).astype(np.uint8), clipped


def test_vggish_postprocessor_matches_official(tmp_path, rng):
    eigen = rng.standard_normal((128, 128)).astype("float32") * 0.2
    means = rng.standard_normal(128).astype("float32")
    npz = tmp_path / "vggish_pca_params.npz"
    np.savez(npz, pca_eigen_vectors=eigen, pca_means=means.reshape(-1, 1))
    embeddings = rng.standard_normal((16, 128)).astype("float32")
    codes, clipped = _official_postprocess(embeddings, eigen, means)

    quantized = VGGishPostprocessor(os.fspath(npz))(embeddings)
    assert keras.backend.standardize_dtype(quantized.dtype) == "uint8"
    difference = np.abs(keras.ops.convert_to_numpy(quantized).astype(int) - codes)
    assert difference.max() <= 1 and difference.mean() < 0.01  # float32 rounding
    floats = VGGishPostprocessor(os.fspath(npz), quantize=False)(embeddings)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(floats), clipped, atol=1e-4)

    with pytest.raises(ValueError, match="`pca_params` must be the path"):
        VGGishPostprocessor({"eigen": eigen})
    with pytest.raises(ValueError, match="128-dimensional but the embeddings have 64"):
        VGGishPostprocessor(os.fspath(npz))(np.zeros((1, 64), "float32"))


# --- serialisation -------------------------------------------------------------------


def _with_postprocessor(rng):
    embedding_input = keras.Input((128,), name="embedding")
    params = {
        "pca_eigen_vectors": rng.standard_normal((128, 128)),
        "pca_means": rng.standard_normal(128),
    }
    outputs = VGGishPostprocessor(params, quantize=False, name="pca")(embedding_input)
    return keras.Model(embedding_input, outputs, name="vggish_pca")


@pytest.mark.parametrize(
    "factory",
    [
        dcase21_net,
        vgg16_cifar,
        lambda: resnet_cifar(20),
        lambda: resnet_cifar(20, shortcut="B"),
        lambda: vggish(include_top=False, pooling="avg", num_classes=3),
        "postprocessor",
    ],
    ids=["dcase21", "vgg16", "resnet20_A", "resnet20_B", "vggish_head", "vggish_pca"],
)
def test_models_save_and_reload_without_custom_objects(tmp_path, rng, factory):
    model = _with_postprocessor(rng) if factory == "postprocessor" else factory()
    data = rng.standard_normal((2, *model.input.shape[1:])).astype("float32")
    path = os.fspath(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert [layer.name for layer in reloaded.layers] == [
        layer.name for layer in model.layers
    ]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(data)),
        keras.ops.convert_to_numpy(model(data)),
        atol=1e-5,
    )


# --- PANNs CNN14 ---------------------------------------------------------------------


def test_cnn14_matches_the_panns_network():
    model = cnn14()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 80_753_615  # PANNs' Cnn14 (AudioSet, 527 classes)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512] + [
        1024,
        1024,
        2048,
        2048,
    ]
    assert not any(c.use_bias for c in convs)
    assert model.get_layer("fc_audioset").activation.__name__ == "sigmoid"
    assert tuple(model.get_layer("freq_mean").output.shape) == (None, None, 1, 2048)


def test_cnn14_with_frontend_prunes_exactly_and_loads_weights(tmp_path, rng):
    from keras_filterprune import apply_plan, count_macs, mask_model, plan_pruning
    from tests import oracle

    model = cnn14(num_classes=10, include_frontend=True, clip_samples=32000)
    model = oracle.randomize(model, 0)
    wave = (0.1 * rng.standard_normal((2, 32000))).astype("float32")
    plan = plan_pruning(model, 0.5, "l1_norm")
    pruned = apply_plan(model, plan)
    y = oracle.outputs(pruned, wave)
    oracle.assert_close(y, oracle.outputs(mask_model(model, plan), wave))
    oracle.assert_close(
        y, oracle.outputs(oracle.dead_channels_model(model, plan), wave)
    )
    assert count_macs(pruned) < 0.3 * count_macs(model)
    assert [g.frozen for g in plan.frozen_groups] == [
        "model output (at layer '<output>')"
    ]
    path = tmp_path / "cnn14.weights.h5"
    model.save_weights(path)
    again = cnn14(
        num_classes=10, include_frontend=True, clip_samples=32000, weights=path
    )
    oracle.assert_close(oracle.outputs(again, wave), oracle.outputs(model, wave))


@pytest.mark.slow
def test_pruned_cnn14_exports_to_tflite_with_its_frontend(tmp_path, rng):
    pytest.importorskip("ai_edge_litert")
    from keras_filterprune import export_tflite, prune_keras_model

    model = cnn14(num_classes=10, include_frontend=True, clip_samples=32000)
    pruned = prune_keras_model(model, 0.9)  # small enough for a quick conversion
    wave = (0.1 * rng.standard_normal((2, 32000))).astype("float32")
    report = export_tflite(pruned, tmp_path / "cnn14.tflite", representative_data=wave)
    assert report.passed, str(report)


# --- weights files checked before the model is built ---------------------------------


@pytest.fixture
def no_build(monkeypatch):
    """Fails any model building: the checks must come first."""

    def built(*args, **kwargs):
        raise AssertionError("the model was built before `weights` was checked")

    monkeypatch.setattr(keras, "Input", built)


def _file(path, data):
    path.write_bytes(data)
    return path


def _zip(path, names):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"{}")
    return path


_HDF5 = b"\x89HDF\r\n\x1a\n"


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("cnn14.weights.h5", lambda p: _file(p, os.urandom(4096)), "not an HDF5 file"),
        ("cnn14.h5", lambda p: _file(p, _HDF5 + os.urandom(512)), "damaged or trunc"),
        ("cnn14.keras", lambda p: _file(p, os.urandom(512)), "not a zip archive"),
        ("cnn14.keras", lambda p: _zip(p, ["config.json"]), "'model.weights.h5'"),
        ("cnn14.weights.json", lambda p: _file(p, b"\x00{"), "not the JSON index"),
        ("Cnn14_mAP=0.431.pth", lambda p: _file(p, b"PK"), "must be a Keras weights"),
        ("cnn14.weights.h5", lambda p: p.mkdir(), "\\(a directory\\)"),
        ("cnn14.weights.h5", lambda p: None, "\\(no such file\\)"),
    ],
)
def test_bad_cnn14_weights_fail_before_building(tmp_path, no_build, name, make, match):
    path = tmp_path / name
    make(path)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match) as info:
        cnn14(weights=path)
    assert str(path) in str(info.value)
    assert time.perf_counter() - start < 5


def test_bad_vggish_weights_fail_before_building(tmp_path, no_build):
    random = _file(tmp_path / "vggish_model.ckpt", os.urandom(4096))
    with pytest.raises(ValueError, match="vggish_model.ckpt' is not a readable TF"):
        vggish(weights=random)
    hdf5 = _file(tmp_path / "vggish.ckpt", _HDF5 + os.urandom(512))
    with pytest.raises(ValueError, match="it is an HDF5 file: name it '.weights.h5'"):
        vggish(weights=hdf5)
    with pytest.raises(ValueError, match="vggish.weights.h5' is not an HDF5 file"):
        vggish(weights=_file(tmp_path / "vggish.weights.h5", os.urandom(64)))
    with pytest.raises(ValueError, match="never downloaded"):
        vggish(weights=tmp_path / "nothing.ckpt")


@pytest.mark.parametrize("factory", [cnn14, vggish])
def test_weights_of_another_type_are_type_errors(factory, no_build):
    with pytest.raises(TypeError, match="`weights` must be None or the local path"):
        factory(weights=3)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads unreadable files",
)
def test_unreadable_weights_fail_before_building(tmp_path, no_build):
    path = _file(tmp_path / "cnn14.weights.h5", _HDF5)
    path.chmod(0)
    try:
        with pytest.raises(PermissionError, match="cnn14.weights.h5"):
            cnn14(weights=path)
    finally:
        path.chmod(0o644)


def test_weights_files_keras_saves_pass_the_check(tmp_path):
    from keras_filterprune.models.vggish import check_weights_file

    inputs = keras.Input((3,))
    model = keras.Model(inputs, L.Dense(2)(inputs))
    for name in ("m.weights.h5", "m.keras", "m.h5"):
        if name.endswith(".keras"):
            model.save(tmp_path / name)
        elif name.endswith(".weights.h5"):
            model.save_weights(tmp_path / name)
        else:
            import h5py

            h5py.File(tmp_path / name, "w").close()
        errors = []
        check_weights_file(tmp_path / name, errors)
        assert errors == []


# --- booleans ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, name",
    [
        (lambda v: cnn14(include_frontend=v), "include_frontend"),
        (lambda v: vggish(include_top=v), "include_top"),
        (lambda v: VGGishPostprocessor(quantize=v), "quantize"),
    ],
)
@pytest.mark.parametrize("value", ["yes", "no", 1, None])
def test_bool_arguments_must_be_bools(factory, name, value, no_build):
    with pytest.raises(TypeError, match=f"`{name}` must be a bool. Received: {name}="):
        factory(value)
