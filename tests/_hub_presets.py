"""Full-size keras-hub preset architectures, built from constructor arguments.

Presets cannot be downloaded here, so `HUB_PRESETS` spells out the backbone
arguments that each preset's `config.json` holds.  Every keras-hub preset below
was made by loading the timm checkpoint (`hf://timm/<name>`) and saving it with
`save_to_preset` (`tools/checkpoint_conversion/convert_*_checkpoints.py` in
keras-hub), so its backbone config is what keras-hub's timm converter
(`keras_hub/src/utils/timm/convert_*.py`, `convert_backbone_config`) returns
for that timm architecture; the values here are that output, copied from
keras-hub 0.32 (and equal to it, value and type, when checked).  The counts
quoted per entry are the `params` of `keras_hub/src/models/*/*_presets.py`; the
models built here reproduce them exactly:

- MobileNetV3, MobileNetV5 (and HGNetV2 B4-B6): `backbone.count_params()`.
- EfficientNet: timm's count, i.e. the backbone's trainable weights (no
  BatchNorm moving statistics) plus timm's 1000-class classifier on
  `num_features` channels.

Differences from the presets, by design:

- Image shape.  The timm-converted presets leave the backbone input free,
  `(None, None, 3)`; here it is fixed to the preset's preprocessing size (224,
  or 768 for MobileNetV5), noted next to each entry.  Parameter counts do not
  depend on it.
- HGNetV2 B0 has no keras-hub preset (keras-hub publishes B4 to B6); its
  arguments are keras-hub's timm converter entry for `hgnetv2_b0`, which is
  what `keras_hub.models.HGNetV2Backbone.from_preset(
  "hf://timm/hgnetv2_b0.ssld_stage2_ft_in1k")` builds.

`HUB_TASKS` are small task models (narrow ResNet/HGNetV2 encoders, 64x64
images) with the structure of keras-hub's task classes, after the arguments of
keras-hub's own task tests; they are not presets.
"""

from __future__ import annotations

import keras

# --- MobileNetV5 300M (Gemma 3n vision encoder) ------------------------------
# keras-hub writes this architecture as timm block strings
# (`convert_mobilenetv5.py`, `MODEL_CONFIGS["mobilenetv5_300m"]`); the helpers
# below expand them into the same per-block lists that keras-hub's
# `convert_arch_def_to_stackwise` produces.

_MNV5_FIELDS = (
    "block_types",
    "num_filters",
    "strides",
    "act_layers",
    "exp_ratios",
    "se_ratios",
    "dw_kernel_sizes",
    "dw_start_kernel_sizes",
    "dw_end_kernel_sizes",
    "exp_kernel_sizes",
    "pw_kernel_sizes",
    "num_heads",
    "key_dims",
    "value_dims",
    "kv_strides",
    "use_cpe",
)


def _mnv5_block(block_type, filters, stride=1, exp=0.0, **fields) -> dict:
    block = dict.fromkeys(_MNV5_FIELDS, 0)
    block.update(
        block_types=block_type,
        num_filters=filters,
        strides=stride,
        act_layers="gelu",
        exp_ratios=exp,
        se_ratios=0.0,
        use_cpe=False,
        **fields,
    )
    return block


def _er(filters, stride=1):  # "er_r1_k3_s{stride}_e4_c{filters}"
    return _mnv5_block(
        "er", filters, stride, 4.0, exp_kernel_sizes=3, pw_kernel_sizes=1
    )


def _uir(filters, exp, start=0, mid=0, stride=1):  # "uir_a{start}_k{mid}_..."
    return _mnv5_block(
        "uir",
        filters,
        stride,
        exp,
        dw_kernel_sizes=mid,
        dw_start_kernel_sizes=start,
    )


def _mqa(filters, heads, dim, kv_stride):  # "mqa_r1_k3_h{heads}_v{kv}_d{dim}_..."
    return _mnv5_block(
        "mqa",
        filters,
        num_heads=heads,
        key_dims=dim,
        value_dims=dim,
        kv_strides=kv_stride,
    )


def _mnv5_stackwise(stages) -> dict:
    kwargs = {"stackwise_num_blocks": [len(stage) for stage in stages]}
    for field in _MNV5_FIELDS:
        kwargs[f"stackwise_{field}"] = [[b[field] for b in stage] for stage in stages]
    return kwargs


_MOBILENETV5_300M_STAGES = [
    [_er(128, stride=2), _er(128), _er(128)],
    [
        _uir(256, 6.0, start=3, mid=5, stride=2),
        _uir(256, 4.0, start=5),
        _uir(256, 4.0, start=3),
        _uir(256, 4.0, start=5),
        _uir(256, 4.0, start=3),
    ],
    [_uir(640, 6.0, start=5, mid=5, stride=2)]
    + [_uir(640, 4.0, start=5)] * 7
    + [_uir(640, 1.0)]
    + [_mqa(640, heads=12, dim=64, kv_stride=2), _uir(640, 2.0)] * 14,
    [_uir(1280, 6.0, start=5, mid=5, stride=2)]
    + [_mqa(1280, heads=16, dim=96, kv_stride=1), _uir(1280, 2.0)] * 19,
]


# --- EfficientNet ------------------------------------------------------------
# `convert_efficientnet.py`: the base kwargs, updated by `VARIANT_MAP[variant]`.

_EFFICIENTNET_BASE = dict(
    min_depth=None,
    include_stem_padding=True,
    use_depth_divisor_as_min_depth=True,
    cap_round_filter_decrease=True,
    stem_conv_padding="valid",
    batch_norm_momentum=0.9,
    batch_norm_epsilon=1e-5,
    dropout=0,
    projection_activation=None,
)

_EFFICIENTNETV2_RW = dict(  # shared by the rw_t / rw_s / rw_m variants
    stackwise_kernel_sizes=[3, 3, 3, 3, 3, 3],
    stackwise_num_repeats=[2, 4, 4, 6, 9, 15],
    stackwise_input_filters=[24, 24, 48, 64, 128, 160],
    stackwise_expansion_ratios=[1, 4, 4, 4, 6, 6],
    stackwise_strides=[1, 2, 2, 2, 1, 2],
    stackwise_squeeze_and_excite_ratios=[0, 0, 0, 0.25, 0.25, 0.25],
    stackwise_force_input_filters=[0, 0, 0, 0, 0, 0],
    stackwise_nores_option=[False] * 6,
    activation="silu",
)


HUB_PRESETS = {
    # name: (class name in keras_hub.models, constructor arguments)
    #
    # "mobilenet_v3_small_050_imagenet" <- timm/mobilenetv3_small_050.lamb_in1k.
    # This is the base table of keras-hub's converter: widths already scaled by
    # 0.5 and rounded to multiples of 8 (timm: c24 * 0.5 -> 16, 8 * 4.5 -> 40).
    # Preset params: 278,784.  Preprocessing 224x224.
    "MobileNetV3Small050": (
        "MobileNetBackbone",
        dict(
            stackwise_num_blocks=[2, 3, 2, 3],
            stackwise_expansion=[[40, 56], [64, 144, 144], [72, 72], [144, 288, 288]],
            stackwise_num_filters=[[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
            stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
            stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
            stackwise_se_ratio=[
                [None, None],
                [0.25, 0.25, 0.25],
                [0.25, 0.25],
                [0.25, 0.25, 0.25],
            ],
            stackwise_activation=[
                ["relu", "relu"],
                ["hard_swish", "hard_swish", "hard_swish"],
                ["hard_swish", "hard_swish"],
                ["hard_swish", "hard_swish", "hard_swish"],
            ],
            stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
            output_num_filters=1024,
            input_num_filters=16,
            depthwise_filters=8,
            depthwise_stride=2,
            depthwise_residual=False,
            squeeze_and_excite=0.5,
            last_layer_filter=288,
            input_activation="hard_swish",
            output_activation="hard_swish",
            image_shape=(224, 224, 3),  # preset: (None, None, 3)
        ),
    ),
    # "mobilenet_v3_large_100_imagenet" <- timm/mobilenetv3_large_100.ra_in1k.
    # Preset params: 2,996,352.  Preprocessing 224x224.
    "MobileNetV3Large100": (
        "MobileNetBackbone",
        dict(
            stackwise_num_blocks=[2, 3, 4, 2, 3],
            stackwise_expansion=[
                [64, 72],
                [72, 120, 120],
                [240, 200, 184, 184],
                [480, 672],
                [672, 960, 960],
            ],
            stackwise_num_filters=[
                [24, 24],
                [40, 40, 40],
                [80, 80, 80, 80],
                [112, 112],
                [160, 160, 160],
            ],
            stackwise_kernel_size=[
                [3, 3],
                [5, 5, 5],
                [3, 3, 3, 3],
                [3, 3],
                [5, 5, 5],
            ],
            stackwise_num_strides=[
                [2, 1],
                [2, 1, 1],
                [2, 1, 1, 1],
                [1, 1],
                [2, 1, 1],
            ],
            stackwise_se_ratio=[
                [None, None],
                [0.25, 0.25, 0.25],
                [None, None, None, None],
                [0.25, 0.25],
                [0.25, 0.25, 0.25],
            ],
            stackwise_activation=[
                ["relu", "relu"],
                ["relu", "relu", "relu"],
                ["hard_swish", "hard_swish", "hard_swish", "hard_swish"],
                ["hard_swish", "hard_swish"],
                ["hard_swish", "hard_swish", "hard_swish"],
            ],
            stackwise_padding=[
                [1, 1],
                [2, 2, 2],
                [1, 1, 1, 1],
                [1, 1],
                [2, 2, 2],
            ],
            output_num_filters=1024,
            input_num_filters=16,
            depthwise_filters=16,
            depthwise_stride=1,
            depthwise_residual=True,
            squeeze_and_excite=None,
            last_layer_filter=960,
            input_activation="hard_swish",
            output_activation="hard_swish",
            image_shape=(224, 224, 3),  # preset: (None, None, 3)
        ),
    ),
    # "efficientnet2_rw_t_ra2_imagenet" <- timm/efficientnetv2_rw_t.ra2_in1k.
    # Preset params: 13,649,388 = 12,624,388 trainable + 1024 * 1000 + 1000
    # (count_params(): 12,743,412).  Preprocessing 224x224 (timm tests at 288).
    "EfficientNetV2RwT": (
        "EfficientNetBackbone",
        dict(
            **_EFFICIENTNET_BASE,
            **_EFFICIENTNETV2_RW,
            stackwise_width_coefficients=[0.8] * 6,
            stackwise_depth_coefficients=[0.9] * 6,
            stackwise_output_filters=[24, 48, 64, 128, 160, 256],
            stackwise_block_types=["cba", "fused", "fused"] + ["unfused"] * 3,
            input_shape=(224, 224, 3),  # preset: (None, None, 3)
        ),
    ),
    # "efficientnet2_rw_s_ra2_imagenet" <- timm/efficientnetv2_rw_s.ra2_in1k.
    # Preset params: 23,941,296 = 22,148,296 trainable + 1792 * 1000 + 1000
    # (count_params(): 22,309,144).  Preprocessing 288x288 (timm tests at 384);
    # 224 here, like the others.
    "EfficientNetV2RwS": (
        "EfficientNetBackbone",
        dict(
            **_EFFICIENTNET_BASE,
            **_EFFICIENTNETV2_RW,
            stackwise_width_coefficients=[1.0] * 6,
            stackwise_depth_coefficients=[1.0] * 6,
            stackwise_output_filters=[24, 48, 64, 128, 160, 272],
            stackwise_block_types=["fused"] * 3 + ["unfused"] * 3,
            num_features=1792,
            input_shape=(224, 224, 3),  # preset: (None, None, 3)
        ),
    ),
    # "efficientnet_es_ra_imagenet" <- timm/efficientnet_es.ra_in1k
    # (EfficientNet-EdgeTPU Small).  Preset params: 5,438,392 = 4,157,392
    # trainable + 1280 * 1000 + 1000 (count_params(): 4,208,832).
    # Preprocessing 224x224.
    "EfficientNetEdgeTPUS": (
        "EfficientNetBackbone",
        dict(
            **_EFFICIENTNET_BASE,
            stackwise_width_coefficients=[1.0] * 6,
            stackwise_depth_coefficients=[1.0] * 6,
            stackwise_kernel_sizes=[3, 3, 3, 5, 5, 5],
            stackwise_num_repeats=[1, 2, 4, 5, 4, 2],
            stackwise_input_filters=[32, 24, 32, 48, 96, 144],
            stackwise_output_filters=[24, 32, 48, 96, 144, 192],
            stackwise_expansion_ratios=[4, 8, 8, 8, 8, 8],
            stackwise_strides=[1, 2, 2, 2, 1, 2],
            stackwise_squeeze_and_excite_ratios=[0] * 6,
            stackwise_block_types=["fused"] * 3 + ["unfused"] * 3,
            stackwise_force_input_filters=[24, 0, 0, 0, 0, 0],
            stackwise_nores_option=[True] + [False] * 5,
            activation="relu",
            input_shape=(224, 224, 3),  # preset: (None, None, 3)
        ),
    ),
    # No keras-hub preset: timm/hgnetv2_b0.ssld_stage2_ft_in1k through
    # keras-hub's timm converter (`convert_hgnetv2.py`, HGNETV2_CONFIGS
    # ["hgnetv2_b0"]); SSLD checkpoints have no learnable affine blocks.
    # count_params(): 1,862,608.  timm: 6.0M = 1,850,336 trainable + the
    # 1024 -> 2048 head conv (2,097,152) + the 1000-class classifier
    # (2,049,000), neither in the backbone.  Preprocessing 224x224
    # (keras-hub's HGNetV2 presets fix image_shape to timm's input size).
    "HGNetV2B0": (
        "HGNetV2Backbone",
        dict(
            depths=[1, 1, 2, 1],
            embedding_size=16,
            hidden_sizes=[64, 256, 512, 1024],
            stem_channels=[3, 16, 16],
            hidden_act="relu",
            use_learnable_affine_block=False,
            stackwise_stage_filters=[
                # [in, mid, out, num_blocks, num_layers, kernel_size]
                [16, 16, 64, 1, 3, 3],
                [64, 32, 256, 1, 3, 3],
                [256, 64, 512, 2, 3, 5],
                [512, 128, 1024, 1, 3, 5],
            ],
            apply_downsample=[False, True, True, True],
            use_lightweight_conv_block=[False, False, True, True],
            image_shape=(224, 224, 3),
        ),
    ),
    # "mobilenetv5_300m_enc_gemma3n" <- timm/mobilenetv5_300m.gemma3n (the only
    # MobileNetV5 preset).  Preset params: 294,284,096.  The preset's image
    # converter resizes to 768x768 (Gemma 3n); the multi-scale fusion adapter
    # brings the last two stages (stride 16 and 32) to 16x16.  224x224 builds
    # too, same parameters and output shape; one CPU call at 768 takes ~10 s.
    "MobileNetV5_300M": (
        "MobileNetV5Backbone",
        dict(
            **_mnv5_stackwise(_MOBILENETV5_300M_STAGES),
            stem_size=64,
            num_features=2048,
            norm_layer="rms_norm",
            act_layer="gelu",
            use_msfa=True,
            layer_scale_init_value=1e-5,
            image_shape=(768, 768, 3),  # preset: (None, None, 3)
        ),
    ),
}


# --- Tasks ---------------------------------------------------------------------
# name: {"image_encoder": (class, kwargs)  -- optional, passed to the backbone,
#        "backbone": (class, kwargs),
#        "task": (class, kwargs)}  -- `backbone=` is added by `build_task`.

HUB_TASKS = {
    # After keras-hub's hgnetv2_image_classifier_test.py.
    "HGNetV2ImageClassifier": {
        "backbone": (
            "HGNetV2Backbone",
            dict(
                depths=[1, 1],
                embedding_size=32,
                hidden_sizes=[64, 128],
                stem_channels=[3, 16, 32],
                hidden_act="relu",
                use_learnable_affine_block=False,
                stackwise_stage_filters=[
                    [32, 16, 64, 1, 1, 3],
                    [64, 32, 128, 1, 1, 3],
                ],
                apply_downsample=[False, True],
                use_lightweight_conv_block=[False, False],
                image_shape=(64, 64, 3),
            ),
        ),
        "task": (
            "HGNetV2ImageClassifier",
            dict(num_classes=3, preprocessor=None),
        ),
    },
    # After keras-hub's retinanet_object_detector_test.py (narrower ResNet):
    # ResNet (P2-P4) -> FPN on P3-P4 -> shared box / class heads (256 wide,
    # fixed in keras-hub).  Default anchor generator and label encoder.
    # (keras-hub's ResNetBackbone requires `stackwise_num_filters[0] == 64`.)
    "RetinaNetObjectDetector": {
        "image_encoder": (
            "ResNetBackbone",
            dict(
                input_conv_filters=[64],
                input_conv_kernel_sizes=[7],
                stackwise_num_filters=[64, 16, 32],
                stackwise_num_blocks=[1, 2, 1],
                stackwise_num_strides=[1, 2, 2],
                block_type="bottleneck_block",
                use_pre_activation=False,
                image_shape=(None, None, 3),
            ),
        ),
        "backbone": (
            "RetinaNetBackbone",
            dict(min_level=3, max_level=4, use_p5=False, image_shape=(64, 64, 3)),
        ),
        "task": (
            "RetinaNetObjectDetector",
            dict(num_classes=10, bounding_box_format="yxyx", preprocessor=None),
        ),
    },
    # After keras-hub's basnet_test.py, narrower.  BASNet feeds its own
    # `projection_filters`-wide conv into the encoder's four ResNet stages (from
    # `pool1_pool` on), so `projection_filters` must equal
    # `input_conv_filters[-1]`, and the encoder's image_shape must stay
    # (None, None, 3).  The decoder is `8 * projection_filters` wide.  The
    # presets' basic-block ResNet-34 forces a 64-wide stem there (keras-hub's
    # basic-block stage 1 has no shortcut conv and must be 64 wide), i.e. a
    # 512-wide decoder and ~50M parameters even at minimal depth; bottleneck
    # blocks (shortcut conv on stage 1) allow a 16-wide stem and decoder of 128.
    "BASNetImageSegmenter": {
        "image_encoder": (
            "ResNetBackbone",
            dict(
                input_conv_filters=[16],
                input_conv_kernel_sizes=[7],
                stackwise_num_filters=[64, 16, 24, 32],
                stackwise_num_blocks=[1, 1, 1, 1],
                stackwise_num_strides=[1, 2, 2, 2],
                block_type="bottleneck_block",
                use_pre_activation=False,
                image_shape=(None, None, 3),
            ),
        ),
        "backbone": (
            "BASNetBackbone",
            dict(num_classes=1, projection_filters=16, image_shape=(64, 64, 3)),
        ),
        "task": ("BASNetImageSegmenter", dict(preprocessor=None)),
    },
    # After keras-hub's deeplab_v3_segmenter_test.py (narrower ResNet): ASPP on
    # P4, upsampled x4 and joined with the projected P2 features.
    "DeepLabV3ImageSegmenter": {
        "image_encoder": (
            "ResNetBackbone",
            dict(
                input_conv_filters=[64],
                input_conv_kernel_sizes=[7],
                stackwise_num_filters=[64, 32, 48],
                stackwise_num_blocks=[1, 1, 1],
                stackwise_num_strides=[1, 2, 2],
                block_type="basic_block",
                use_pre_activation=False,
                image_shape=(None, None, 3),
            ),
        ),
        "backbone": (
            "DeepLabV3Backbone",
            dict(
                low_level_feature_key="P2",
                spatial_pyramid_pooling_key="P4",
                dilation_rates=[6, 12, 18],
                upsampling_size=4,
                image_shape=(64, 64, 3),
            ),
        ),
        "task": (
            "DeepLabV3ImageSegmenter",
            dict(num_classes=2, activation="softmax", preprocessor=None),
        ),
    },
}


def build_preset(name: str, seed: int = 0, image_size: int | None = None):
    """The backbone `HUB_PRESETS[name]` describes, with random weights; at
    `image_size` x `image_size` when given (the architecture is the same)."""
    import keras_hub

    cls, kwargs = HUB_PRESETS[name]
    kwargs = dict(kwargs)
    if image_size is not None:
        key = "input_shape" if "input_shape" in kwargs else "image_shape"
        kwargs[key] = (image_size, image_size, 3)
    keras.utils.set_random_seed(seed)
    return getattr(keras_hub.models, cls)(**kwargs)


def build_task(name: str, seed: int = 0) -> keras.Model:
    """The task model `HUB_TASKS[name]` describes, with random weights and no
    preprocessor."""
    import keras_hub

    spec = HUB_TASKS[name]
    keras.utils.set_random_seed(seed)
    backbone_cls, backbone_kwargs = spec["backbone"]
    backbone_kwargs = dict(backbone_kwargs)
    if "image_encoder" in spec:
        encoder_cls, encoder_kwargs = spec["image_encoder"]
        encoder = getattr(keras_hub.models, encoder_cls)(**encoder_kwargs)
        backbone_kwargs["image_encoder"] = encoder
    backbone = getattr(keras_hub.models, backbone_cls)(**backbone_kwargs)
    task_cls, task_kwargs = spec["task"]
    return getattr(keras_hub.models, task_cls)(backbone=backbone, **task_kwargs)
