"""Small keras-hub backbones built from constructor arguments (never downloaded),
shared by `tests/test_hub.py` and `benchmarks/bench_hub.py`.

Widths are small so that each builds, prunes and runs in about a second; the
structures (blocks, residuals, pyramids, custom layers) are those of the
published presets.
"""

from __future__ import annotations

import keras
import numpy as np


def _efficientnet(block_types, se=(0.0, 0.25, 0.25)) -> dict:
    return dict(
        stackwise_kernel_sizes=[3, 3, 3],
        stackwise_num_repeats=[1, 2, 1],
        stackwise_input_filters=[8, 8, 16],
        stackwise_output_filters=[8, 16, 24],
        stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=list(se),
        stackwise_strides=[1, 2, 2],
        stackwise_block_types=list(block_types),
        stackwise_force_input_filters=[0] * 3,
        stackwise_nores_option=[False] * 3,
        stackwise_width_coefficients=[1.0] * 3,
        stackwise_depth_coefficients=[1.0] * 3,
        num_features=64,
        input_shape=(32, 32, 3),
    )


HUB_BACKBONES = {
    # name: (class name, constructor arguments)
    "ResNet": (
        "ResNetBackbone",
        dict(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 16, 32],
            stackwise_num_blocks=[1, 2, 1],
            stackwise_num_strides=[1, 2, 2],
            block_type="bottleneck_block",
            use_pre_activation=False,
            image_shape=(32, 32, 3),
        ),
    ),
    "ResNetV2": (
        "ResNetBackbone",
        dict(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 16],
            stackwise_num_blocks=[1, 2],
            stackwise_num_strides=[1, 2],
            block_type="basic_block",
            use_pre_activation=True,
            image_shape=(32, 32, 3),
        ),
    ),
    "VGG": (
        "VGGBackbone",
        dict(
            stackwise_num_repeats=[2, 2],
            stackwise_num_filters=[8, 16],
            image_shape=(16, 16, 3),
        ),
    ),
    "DenseNet": (
        "DenseNetBackbone",
        dict(
            stackwise_num_repeats=[2, 2],
            compression_ratio=0.5,
            growth_rate=4,
            image_shape=(32, 32, 3),
        ),
    ),
    "Xception": (
        "XceptionBackbone",
        dict(
            stackwise_conv_filters=[[8, 16], [32, 32], [32, 32], [48, 48]],
            stackwise_pooling=[False, True, False, False],
            image_shape=(64, 64, 3),
        ),
    ),
    "CSPNet": (
        "CSPNetBackbone",
        dict(
            stem_filters=8,
            stem_kernel_size=3,
            stem_strides=1,
            stackwise_strides=2,
            stackwise_depth=[1, 2],
            stackwise_num_filters=[16, 24],
            down_growth=True,
            bottle_ratio=(0.5, 1.0),
            block_ratio=(1.0, 0.5),
            expand_ratio=(2.0, 1.0),
            block_type="dark_block",
            stage_type="csp",
            stem_padding="same",
            image_shape=(32, 32, 3),
        ),
    ),
    "CSPNetGrouped": (  # ResNeXt-style dark blocks: grouped 3x3 convolutions
        "CSPNetBackbone",
        dict(
            stem_filters=16,
            stem_kernel_size=3,
            stem_strides=1,
            stackwise_strides=2,
            stackwise_depth=[1, 1],
            stackwise_num_filters=[32, 64],
            groups=4,
            bottle_ratio=(1.0,),
            block_ratio=(0.5,),
            block_type="bottleneck_block",
            stage_type="csp",
            stem_padding="same",
            image_shape=(32, 32, 3),
        ),
    ),
    "EfficientNet": ("EfficientNetBackbone", _efficientnet(["v1", "v1", "v1"])),
    # EfficientNetV2's fused/unfused MBConv blocks are keras-hub composite layers.
    "EfficientNetV2": (
        "EfficientNetBackbone",
        _efficientnet(["fused", "fused", "unfused"], se=[0.0, 0.0, 0.25]),
    ),
    # EfficientNet-EdgeTPU: fused blocks first, a forced stem width, no residual
    # in the first stage, no SE (the arguments of the "es" preset, narrowed).
    "EfficientNetEdgeTPU": (
        "EfficientNetBackbone",
        {
            **_efficientnet(["fused", "fused", "unfused"], se=[0.0, 0.0, 0.0]),
            "stackwise_force_input_filters": [8, 0, 0],
            "stackwise_nores_option": [True, False, False],
            "activation": "relu",
        },
    ),
    "MobileNetV3": (
        "MobileNetBackbone",
        dict(
            stackwise_expansion=[[16, 24], [32, 48]],
            stackwise_num_blocks=[2, 2],
            stackwise_num_filters=[[8, 8], [16, 16]],
            stackwise_kernel_size=[[3, 3], [5, 5]],
            stackwise_num_strides=[[2, 1], [2, 1]],
            stackwise_se_ratio=[[None, None], [0.25, 0.25]],
            stackwise_activation=[
                ["relu", "relu"],
                ["hard_swish", "hard_swish"],
                ["hard_swish"],
            ],
            stackwise_padding=[[1, 1], [2, 2]],
            output_num_filters=64,
            input_activation="hard_swish",
            output_activation="hard_swish",
            input_num_filters=8,
            image_shape=(32, 32, 3),
            depthwise_filters=8,
            depthwise_stride=2,
            depthwise_residual=False,
            squeeze_and_excite=0.5,
            last_layer_filter=48,
        ),
    ),
    "HGNetV2": (  # a dict of stage outputs
        "HGNetV2Backbone",
        dict(
            embedding_size=16,
            stem_channels=[3, 8, 16],
            hidden_act="relu",
            use_learnable_affine_block=False,
            image_shape=(32, 32, 3),
            depths=[1, 1],
            hidden_sizes=[32, 64],
            stackwise_stage_filters=[[16, 8, 32, 1, 1, 3], [32, 16, 64, 1, 1, 3]],
            apply_downsample=[False, True],
            use_lightweight_conv_block=[False, True],
            out_features=["stem", "stage1", "stage2"],
        ),
    ),
}


def hub_backbone(name: str, seed: int = 0) -> keras.Model:
    """A small keras-hub backbone with random weights (BatchNorm statistics
    randomised too, so that pruning changes the outputs measurably)."""
    import keras_hub

    from tests import oracle

    cls, kwargs = HUB_BACKBONES[name]
    keras.utils.set_random_seed(seed)
    model = getattr(keras_hub.models, cls)(**kwargs)
    oracle.randomize(model, seed)
    return model


def hub_inputs(model: keras.Model, batch: int = 2, seed: int = 0) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, *shape)).astype("float32")
