"""Tests of keras_filterprune/profile.py.

Every expected count is written out by hand (output size x kernel x channels ...),
not computed with the formulas under test.
"""

import json

import keras
import pytest

from keras_filterprune import FilterPruneWarning, count_macs, profile_model
from keras_filterprune.profile import ModelProfile, count_params

L = keras.layers


def _check_params(model, profile):
    assert profile.total_params == model.count_params()
    assert count_params(model) == model.count_params()


def test_vgg_style_conv_bn_pool_dense():
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)  # -> 16x16x8
    x = L.Conv2D(16, 3, name="conv2")(x)  # valid -> 14x14x16
    x = L.AveragePooling2D(2, strides=1, name="pool2")(x)  # -> 13x13x16
    x = L.Flatten(name="flatten")(x)  # 2704
    outputs = L.Dense(10, name="fc")(x)
    model = keras.Model(inputs, outputs)
    profile = profile_model(model)

    expected = {  # path: (params, macs)
        "conv1": (3 * 3 * 3 * 8 + 8, 32 * 32 * 3 * 3 * 3 * 8),  # 224, 221184
        "bn1": (4 * 8, 32 * 32 * 8),  # 32, 8192
        "relu1": (0, 0),
        "pool1": (0, 16 * 16 * 8 * 4),  # 8192
        "conv2": (3 * 3 * 8 * 16 + 16, 14 * 14 * 3 * 3 * 8 * 16),  # 1168, 225792
        "pool2": (0, 13 * 13 * 16 * 4),  # 10816
        "flatten": (0, 0),
        "fc": (2704 * 10 + 10, 2704 * 10),  # 27050, 27040
    }
    assert profile.by_layer() == expected
    assert [p.path for p in profile.layers] == list(expected)
    assert profile.total_params == 28474 == model.count_params()
    assert profile.trainable_params == 28474 - 16  # BN moving mean and variance
    assert profile.non_trainable_params == 16
    assert profile.total_macs == 221184 + 8192 + 8192 + 225792 + 10816 + 27040
    assert count_macs(model) == 501216
    assert profile.layers[0].output_shape == (None, 32, 32, 8)
    assert profile.layers[0].class_name == "Conv2D"


def test_mobilenet_like_depthwise_separable_block():
    inputs = keras.Input((16, 16, 8))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inputs)
    x = L.BatchNormalization(name="bn")(x)  # 16x16x16
    x = L.ReLU(6.0, name="relu6")(x)
    x = L.SeparableConv2D(
        32, 3, strides=2, padding="same", depth_multiplier=2, name="sep"
    )(x)  # -> 8x8x32
    outputs = L.Conv2D(64, 1, name="pw")(x)  # -> 8x8x64
    model = keras.Model(inputs, outputs)
    profile = profile_model(model)

    assert profile.by_layer() == {
        # 16x16 outputs, 3x3 kernel, 8 channels x 2 multipliers; 144 + 16 params
        "dw": (160, 16 * 16 * 9 * 8 * 2),  # 36864
        "bn": (64, 16 * 16 * 16),  # 4096
        "relu6": (0, 0),
        # depthwise 9*16*2 = 288, pointwise 32*32 = 1024, bias 32
        # MACs: depthwise 8*8*9*16*2 = 18432 + pointwise 8*8*32*32 = 65536
        "sep": (288 + 1024 + 32, 18432 + 65536),
        "pw": (32 * 64 + 64, 8 * 8 * 32 * 64),  # 2112, 131072
    }
    _check_params(model, profile)
    assert profile.total_macs == 36864 + 4096 + 83968 + 131072


def test_conv1d_audio_net():
    model = keras.Sequential(
        [
            keras.Input((800, 1)),
            L.Conv1D(16, 80, strides=4, name="conv1"),  # (800-80)/4+1 = 181
            L.MaxPooling1D(4, name="pool"),  # 181 // 4 = 45
            L.DepthwiseConv1D(3, padding="same", name="dw"),  # 45x16
            L.Conv1D(32, 3, padding="same", name="conv2"),  # 45x32
            L.GlobalAveragePooling1D(name="gap"),
            L.Dense(10, name="fc"),
        ]
    )
    profile = profile_model(model)
    assert profile.by_layer() == {
        "conv1": (80 * 16 + 16, 181 * 80 * 1 * 16),  # 1296, 231680
        "pool": (0, 45 * 16 * 4),  # 2880
        "dw": (3 * 16 + 16, 45 * 3 * 16),  # 64, 2160
        "conv2": (3 * 16 * 32 + 32, 45 * 3 * 16 * 32),  # 1568, 69120
        "gap": (0, 45 * 32),  # 1440
        "fc": (330, 320),
    }
    _check_params(model, profile)
    assert profile.total_macs == 231680 + 2880 + 2160 + 69120 + 1440 + 320


def test_conv2d_transpose_decoder():
    inputs = keras.Input((4, 4, 32))
    x = L.Conv2DTranspose(16, 3, strides=2, padding="same", name="up1")(inputs)
    outputs = L.Conv2DTranspose(8, 4, strides=2, name="up2")(x)  # 8 -> 7*2+4 = 18
    model = keras.Model(inputs, outputs)
    profile = profile_model(model)
    assert profile.layers[1].output_shape == (None, 18, 18, 8)
    assert profile.by_layer() == {
        # input positions x kernel x C_in x filters
        "up1": (9 * 32 * 16 + 16, 4 * 4 * 9 * 32 * 16),  # 4624, 73728
        "up2": (16 * 16 * 8 + 8, 8 * 8 * 16 * 16 * 8),  # 2056, 131072
    }
    _check_params(model, profile)


def test_conv3d_and_conv3d_transpose():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 8, 2)),
            L.Conv3D(4, 3, name="conv"),  # -> 6x6x6x4
            L.MaxPooling3D(2, name="pool"),  # -> 3x3x3x4
            L.Conv3DTranspose(2, 2, strides=2, name="up"),  # -> 6x6x6x2
        ]
    )
    profile = profile_model(model)
    assert profile.by_layer() == {
        "conv": (27 * 2 * 4 + 4, 6 * 6 * 6 * 27 * 2 * 4),  # 220, 46656
        "pool": (0, 3 * 3 * 3 * 4 * 8),  # 864
        "up": (8 * 4 * 2 + 2, 3 * 3 * 3 * 8 * 4 * 2),  # 66, 1728
    }
    _check_params(model, profile)


def test_grouped_conv():
    inputs = keras.Input((10, 10, 8))
    grouped = L.Conv2D(16, 3, groups=4, name="grouped")(inputs)  # -> 8x8x16
    dense = L.Conv2D(16, 3, name="dense")(inputs)
    model = keras.Model(inputs, [grouped, dense])
    profile = profile_model(model)
    # each filter sees 8 / 4 = 2 input channels
    assert profile.by_layer()["grouped"] == (9 * 2 * 16 + 16, 8 * 8 * 9 * 2 * 16)
    assert profile.by_layer()["dense"] == (9 * 8 * 16 + 16, 8 * 8 * 9 * 8 * 16)
    assert profile.layers[0].macs * 4 == profile.layers[1].macs
    _check_params(model, profile)


def test_nested_sequential_and_shared_layer():
    inner = keras.Sequential(
        [L.Conv2D(4, 3, padding="same", name="c"), L.BatchNormalization(name="bn")],
        name="inner",
    )
    shared = L.Conv2D(4, 1, name="shared")
    inputs = keras.Input((8, 8, 3))
    x = inner(inputs)
    a = shared(x)
    b = shared(a)  # second call of the same weights
    x = L.Add(name="add")([a, b])
    outputs = L.Dense(2, name="fc")(x)  # applied over the 8x8 positions
    model = keras.Model(inputs, outputs)
    profile = profile_model(model)

    rows = [(p.path, p.node_index, p.params, p.macs) for p in profile.layers]
    assert rows == [
        ("inner/c", 0, 9 * 3 * 4 + 4, 8 * 8 * 9 * 3 * 4),  # 112, 6912
        ("inner/bn", 0, 16, 8 * 8 * 4),  # 256
        ("shared", 0, 4 * 4 + 4, 8 * 8 * 4 * 4),  # 20, 1024
        ("shared", 1, 0, 8 * 8 * 4 * 4),  # params once, MACs per call
        ("add", 0, 0, 0),
        ("fc", 0, 4 * 2 + 2, 8 * 8 * 4 * 2),  # 10, 512
    ]
    assert profile.by_layer()["shared"] == (20, 2048)
    assert profile.total_params == 112 + 16 + 20 + 10 == model.count_params()
    assert profile.total_macs == 6912 + 256 + 2048 + 512
    assert "shared [call 1]" in profile.table()


def test_nested_functional_model_called_twice():
    enc_in = keras.Input((6,))
    encoder = keras.Model(enc_in, L.Dense(3, name="proj")(enc_in), name="enc")
    a, b = keras.Input((6,)), keras.Input((6,))
    outputs = L.Subtract(name="diff")([encoder(a), encoder(b)])
    model = keras.Model([a, b], outputs)
    profile = profile_model(model)
    assert profile.by_layer() == {"enc/proj": (6 * 3 + 3, 2 * 6 * 3), "diff": (0, 0)}
    _check_params(model, profile)


def _dcase21_net():
    return keras.Sequential(
        [
            keras.Input((40, 500, 1)),
            L.Conv2D(16, 7, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="relu1"),
            L.Conv2D(16, 7, padding="same", name="conv2"),
            L.BatchNormalization(name="bn2"),
            L.ReLU(name="relu2"),
            L.MaxPooling2D(5, name="pool2"),  # -> 8x100x16
            L.Dropout(0.3, name="drop2"),
            L.Conv2D(32, 7, padding="same", name="conv3"),
            L.BatchNormalization(name="bn3"),
            L.ReLU(name="relu3"),
            L.MaxPooling2D((4, 100), name="pool3"),  # -> 2x1x32
            L.Dropout(0.3, name="drop3"),
            L.Flatten(name="flatten"),  # 64
            L.Dense(100, activation="relu", name="fc1"),
            L.Dropout(0.3, name="drop4"),
            L.Dense(10, activation="softmax", name="fc2"),
        ]
    )


def test_dcase21_baseline():
    model = _dcase21_net()
    profile = profile_model(model)
    counts = {k: v for k, v in profile.by_layer().items() if v != (0, 0)}
    assert counts == {
        "conv1": (7 * 7 * 1 * 16 + 16, 40 * 500 * 49 * 1 * 16),  # 800, 15.68M
        "bn1": (64, 40 * 500 * 16),  # 320000
        "conv2": (7 * 7 * 16 * 16 + 16, 40 * 500 * 49 * 16 * 16),  # 12560, 250.88M
        "bn2": (64, 40 * 500 * 16),
        "pool2": (0, 8 * 100 * 16 * 25),  # 320000
        "conv3": (7 * 7 * 16 * 32 + 32, 8 * 100 * 49 * 16 * 32),  # 25120, 20070400
        "bn3": (128, 8 * 100 * 32),  # 25600
        "pool3": (0, 2 * 1 * 32 * 400),  # 25600
        "fc1": (64 * 100 + 100, 64 * 100),  # 6500, 6400
        "fc2": (100 * 10 + 10, 100 * 10),  # 1010, 1000
    }
    # The published DCASE 2021 Task 1A baseline size.
    assert profile.total_params == 46246 == model.count_params()
    assert profile.trainable_params == 46246 - 2 * (16 + 16 + 32)
    assert profile.total_macs == 287_649_000


def test_mobilenet_v2_against_published_macs():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    profile = profile_model(model)
    assert profile.total_params == model.count_params() == 3_538_984
    assert profile.uncounted == ()
    # Sandler et al. (2018) report 300M MACs at 224x224. Conv MACs scale exactly with
    # (96/224)^2 because every feature map divides by 32 at both sizes; the rest
    # does not: the 1280x1000 classifier (1.28M) is size-independent, and we also
    # count BatchNormalization (~1.2M) and pooling, which the paper leaves out, and
    # "300M" is rounded. Hence a loose tolerance.
    published = 300e6 * (96 / 224) ** 2  # 55.1M
    assert 0.95 * published < profile.total_macs < 1.10 * published
    conv_and_fc = sum(
        p.macs
        for p in profile.layers
        if p.class_name in ("Conv2D", "DepthwiseConv2D", "Dense")
    )
    assert 0.98 * published < conv_and_fc < 1.05 * published


def test_channels_first_and_adaptive_pooling():
    inputs = keras.Input((3, 10, 10))
    x = L.Conv2D(4, 3, data_format="channels_first", name="conv")(inputs)  # 4x8x8
    x = L.AdaptiveAveragePooling2D(3, data_format="channels_first", name="ap")(x)
    model = keras.Model(inputs, x)
    profile = profile_model(model)
    # 8 pooled to 3: windows [0, 3), [2, 6), [5, 8) -> 3 + 4 + 3 = 10 per axis
    assert profile.by_layer() == {
        "conv": (27 * 4 + 4, 8 * 8 * 9 * 3 * 4),
        "ap": (0, 4 * 10 * 10),
    }


def test_uncounted_layers_are_reported():
    inputs = keras.Input((5, 4))
    x = L.LayerNormalization(name="ln")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="fc")(x))
    profile = profile_model(model)  # per-channel weights: listed, no warning
    assert profile.uncounted == ("ln",)
    assert profile.by_layer()["ln"] == (8, 0)
    assert "No MAC rule (counted as 0): ln" in profile.table()
    _check_params(model, profile)


def test_layers_of_unknown_cost_are_named_in_a_warning():
    class Mixer(L.Layer):  # a custom layer with a kernel, no handler
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 4), name="w")

        def call(self, x):  # its own weight in call: not traced inside
            return keras.ops.matmul(x, self.w)

    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, L.Dense(2)(Mixer(name="mix")(inputs)))
    with pytest.warns(FilterPruneWarning, match=r"unknown and counted as 0: \['mix'\]"):
        count_macs(model)


def test_table_dict_and_str():
    model = _dcase21_net()
    profile = profile_model(model)
    assert isinstance(profile, ModelProfile)
    table = profile.table()
    assert str(profile) == table
    lines = table.splitlines()
    assert lines[0].split() == "Layer Type Output shape Params MACs MACs %".split()
    assert lines[-2].split() == ["Total", "46,246", "287,649,000"]
    assert len(lines) == len(profile.layers) + 5  # header, 2 rules, total, summary
    assert len({len(line) for line in lines[2:-3]}) == 1  # fixed width
    assert "conv2   " in table and "(None, 40, 500, 16)" in table
    human = profile.table(human=True)
    assert "46.2K" in human and "288M" in human and "251M" in human
    data = profile.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["total_params"] == 46246
    assert data["total_macs"] == 287_649_000
    assert data["layers"][0]["output_shape"] == [None, 40, 500, 16]
    assert data["layers"][0]["path"] == "conv1"


def test_subclassed_model_is_counted_through_its_call():
    class Net(keras.Model):
        def __init__(self, branch=False):
            super().__init__()
            self.branch = branch
            self.fc = L.Dense(2, name="fc")

        def call(self, x):
            if self.branch and keras.ops.max(x) > 0:  # control flow on a value
                return -self.fc(x)
            return self.fc(x)

    model = Net()
    model(keras.ops.zeros((1, 3)))
    assert profile_model(model).by_layer() == {"fc": (8, 6)}
    untraceable = Net(branch=True)
    untraceable(keras.ops.zeros((1, 3)))
    with pytest.raises(TypeError, match="subclassed model that cannot be traced"):
        profile_model(untraceable)
    with pytest.raises(TypeError, match="subclassed model that cannot be traced"):
        count_params(untraceable)
    assert count_params(model) == model.count_params() == 8


def test_unbuilt_sequential_is_rejected():
    model = keras.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        profile_model(model)
    with pytest.raises(ValueError, match="not built"):
        count_macs(model)


def test_not_a_model_is_rejected():
    with pytest.raises(TypeError, match="model"):
        profile_model(L.Dense(2))


def test_unknown_spatial_dims():
    inputs = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    with pytest.raises(ValueError, match=r"'conv'.*fixed input size.*input_shape="):
        profile_model(model)
    # Parameters do not depend on the input size.
    assert count_params(model) == model.count_params() == 112 + 10
    # At a given size: the same counts as the model built at that size.
    fixed = keras.Input((9, 7, 3))
    y = L.Conv2D(4, 3)(fixed)
    twin = keras.Model(fixed, L.Dense(2)(L.GlobalAveragePooling2D()(y)))
    assert count_macs(model, input_shape=(9, 7, 3)) == count_macs(twin) > 0
    profile = profile_model(model, input_shape=[9, 7, 3])
    assert profile.layers[0].output_shape == (None, 7, 5, 4)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((9, 7), "one input example"),
        ((9, 7, 4), "agree with the model"),
        ((0, 7, 3), "positive"),
        ("224", "one input example"),
        ((9.0, 7, 3), "one input example"),
    ],
)
def test_bad_input_shape(shape, match):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match=match):
        count_macs(model, input_shape=shape)
