"""Tests of keras_filterprune/audio/frontends.py.

The VGGish reference below is written from the specification (tensorflow/models
research/audioset/vggish `mel_features.py`), with loops and float64, not with the
functions under test. The DCASE reference is librosa.
"""

import os

import keras
import numpy as np
import pytest

from keras_filterprune.audio import DCASELogMel, VGGishLogMel

# --- VGGish reference, from the spec ---------------------------------------------


def _htk_mel(hz):
    return 1127.0 * np.log(1.0 + hz / 700.0)


def _reference_vggish(waveform, example_hop=96, return_examples=True):
    """log-mel examples of one 16 kHz waveform, float64."""
    frame_length, hop, fft_length = 400, 160, 512
    num_frames = 1 + (len(waveform) - frame_length) // hop
    frames = np.stack(
        [waveform[i * hop : i * hop + frame_length] for i in range(num_frames)]
    ).astype(np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi / frame_length * np.arange(frame_length))
    spectrogram = np.abs(np.fft.rfft(frames * window, fft_length))  # (F, 257)

    bins_mel = _htk_mel(np.linspace(0.0, 8000.0, 257))
    edges = np.linspace(_htk_mel(125.0), _htk_mel(7500.0), 64 + 2)
    mel_matrix = np.zeros((257, 64))
    for band in range(64):
        lower, center, upper = edges[band : band + 3]
        for k in range(257):
            rise = (bins_mel[k] - lower) / (center - lower)
            fall = (upper - bins_mel[k]) / (upper - center)
            mel_matrix[k, band] = max(0.0, min(rise, fall))
    mel_matrix[0, :] = 0.0  # DC bin
    log_mel = np.log(spectrogram @ mel_matrix + 0.01)  # (F, 64)
    if not return_examples:
        return log_mel
    num_examples = 1 + (num_frames - 96) // example_hop
    return np.stack(
        [log_mel[i * example_hop : i * example_hop + 96] for i in range(num_examples)]
    )


def _signal(rng, batch, samples, rate):
    t = np.arange(samples) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 3100.0 * t)
    noise = 0.1 * rng.standard_normal((batch, samples))
    return (tone + noise).astype("float32")


@pytest.mark.parametrize("stft", ["rfft", "matmul"])
def test_vggish_matches_spec_reference(rng, stft):
    waveform = _signal(rng, 2, 16000 * 2 + 3000, 16000)  # 218 frames, 2 examples
    output = keras.ops.convert_to_numpy(VGGishLogMel(stft=stft)(waveform))
    assert output.shape == (2, 2, 96, 64, 1)
    for b in range(2):
        expected = _reference_vggish(waveform[b].astype(np.float64))
        np.testing.assert_allclose(output[b, ..., 0], expected, atol=1e-4, rtol=0)


def test_vggish_spectrogram_and_overlapping_examples(rng):
    waveform = _signal(rng, 1, 16000 * 2, 16000)  # 198 frames
    frames = keras.ops.convert_to_numpy(VGGishLogMel(return_examples=False)(waveform))
    assert frames.shape == (1, 198, 64, 1)
    np.testing.assert_allclose(
        frames[0, ..., 0],
        _reference_vggish(waveform[0], return_examples=False),
        atol=1e-4,
        rtol=0,
    )
    examples = keras.ops.convert_to_numpy(VGGishLogMel(example_hop=48)(waveform))
    assert examples.shape == (1, 3, 96, 64, 1)  # 1 + (198 - 96) // 48
    np.testing.assert_allclose(
        examples[0, ..., 0],
        _reference_vggish(waveform[0], example_hop=48),
        atol=1e-4,
        rtol=0,
    )


# --- DCASE, against librosa -------------------------------------------------------


def _reference_dcase(waveform, pad_mode="reflect"):
    librosa = pytest.importorskip("librosa")
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(1764) / 1764)  # periodic
    magnitude = np.abs(
        librosa.stft(
            waveform.astype(np.float64),
            n_fft=2048,
            hop_length=882,
            win_length=1764,
            window=window,
            center=True,
            pad_mode=pad_mode,
        )
    )
    mel = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=40, fmin=0, fmax=22050)
    return np.log(mel.astype(np.float64) @ magnitude + np.spacing(1))  # (40, T)


def test_dcase_mel_matrix_equals_librosa():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=40, fmin=0, fmax=22050)
    matrix = DCASELogMel().mel_matrix
    assert matrix.shape == (1025, 40)
    np.testing.assert_allclose(matrix.T, expected, atol=1e-6, rtol=0)


def test_dcase_window_is_periodic_hamming():
    scipy_signal = pytest.importorskip("scipy.signal")
    expected = scipy_signal.get_window("hamming", 1764, fftbins=True)
    np.testing.assert_allclose(DCASELogMel().window, expected, atol=1e-12)


@pytest.mark.parametrize(
    "stft, pad_mode", [("rfft", "reflect"), ("matmul", "reflect"), ("rfft", "constant")]
)
def test_dcase_matches_librosa_pipeline(rng, stft, pad_mode):
    waveform = _signal(rng, 2, 44100 + 1234, 44100)
    output = keras.ops.convert_to_numpy(
        DCASELogMel(pad_mode=pad_mode, stft=stft)(waveform)
    )
    assert output.shape == (2, 40, 1 + (44100 + 1234) // 882, 1)
    for b in range(2):
        expected = _reference_dcase(waveform[b], pad_mode)
        np.testing.assert_allclose(output[b, ..., 0], expected, atol=1e-4, rtol=0)


def test_dcase_num_frames_crops_and_pads(rng):
    ten_seconds = _signal(rng, 1, 441000, 44100)
    full = keras.ops.convert_to_numpy(DCASELogMel()(ten_seconds))
    assert full.shape == (1, 40, 501, 1)
    cropped = keras.ops.convert_to_numpy(DCASELogMel(num_frames=500)(ten_seconds))
    assert cropped.shape == (1, 40, 500, 1)
    np.testing.assert_array_equal(cropped, full[:, :, :500])

    short = ten_seconds[:, :44100]  # 51 frames; padded with zeros to 500
    padded = keras.ops.convert_to_numpy(DCASELogMel(num_frames=500)(short))
    assert padded.shape == (1, 40, 500, 1)
    silence = np.zeros((1, 499 * 882), "float32")
    silence[:, :44100] = short
    expected = _reference_dcase(silence[0])[:, :500]
    np.testing.assert_allclose(padded[0, ..., 0], expected, atol=1e-4, rtol=0)


# --- shapes, config, serialisation, TFLite ---------------------------------------


def test_static_and_dynamic_shapes():
    for layer, samples, expected in [
        (VGGishLogMel(), 15600, (None, 1, 96, 64, 1)),
        (VGGishLogMel(), 16000 * 3, (None, 3, 96, 64, 1)),
        (VGGishLogMel(return_examples=False), 16000, (None, 98, 64, 1)),
        (DCASELogMel(), 44100, (None, 40, 51, 1)),
        (DCASELogMel(num_frames=500), 44100, (None, 40, 500, 1)),
    ]:
        assert layer.compute_output_shape((None, samples)) == expected
        assert tuple(layer(keras.Input((samples,))).shape) == expected
        assert tuple(layer(keras.Input((samples, 1))).shape) == expected

    model_input = keras.Input((None,))
    model = keras.Model(model_input, VGGishLogMel()(model_input))
    assert tuple(model.output.shape) == (None, None, 96, 64, 1)
    out = model(np.zeros((2, 16000 * 2), "float32"))
    assert tuple(out.shape) == (2, 2, 96, 64, 1)

    model_input = keras.Input((None,))
    model = keras.Model(model_input, DCASELogMel(num_frames=60)(model_input))
    assert tuple(model(np.zeros((1, 30000), "float32")).shape) == (1, 40, 60, 1)


def test_too_short_input_gives_no_examples():
    out = VGGishLogMel()(np.zeros((1, 8000), "float32"))  # 48 frames < 96
    assert tuple(out.shape) == (1, 0, 96, 64, 1)


def test_config_round_trip():
    for layer in [
        VGGishLogMel(return_examples=False, example_hop=48, stft="matmul"),
        DCASELogMel(num_frames=500, pad_mode="constant", stft="matmul"),
    ]:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: VGGishLogMel(stft="fft"), "`stft` must be one of"),
        (lambda: VGGishLogMel(example_hop=0), "`example_hop` must be a positive int"),
        (lambda: DCASELogMel(num_frames=0), "`num_frames` must be None or a positive"),
        (lambda: DCASELogMel(pad_mode="edge"), "`pad_mode` must be 'reflect'"),
    ],
)
def test_invalid_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize("value", [1, "no", None])
def test_return_examples_must_be_a_bool(value):
    with pytest.raises(TypeError, match="`return_examples` must be a bool"):
        VGGishLogMel(return_examples=value)
    assert VGGishLogMel(return_examples=np.bool_(False)).return_examples is False


def test_invalid_input_rank():
    with pytest.raises(ValueError, match="mono waveforms"):
        VGGishLogMel()(keras.Input((16000, 2)))


def _audio_models():
    vggish_in = keras.Input((15600,), name="waveform")
    x = VGGishLogMel(return_examples=False)(vggish_in)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    vggish_model = keras.Model(
        vggish_in, keras.layers.GlobalAveragePooling2D()(x), name="vggish_frontend"
    )
    dcase_in = keras.Input((22050,), name="waveform")
    x = DCASELogMel(num_frames=26)(dcase_in)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    dcase_model = keras.Model(
        dcase_in, keras.layers.GlobalAveragePooling2D()(x), name="dcase_frontend"
    )
    return vggish_model, dcase_model


def test_models_with_frontends_save_and_reload(tmp_path, rng):
    for model in _audio_models():
        data = _signal(rng, 2, model.input.shape[1], 16000)
        path = os.fspath(tmp_path / f"{model.name}.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)  # no custom_objects
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(reloaded(data)),
            keras.ops.convert_to_numpy(model(data)),
            atol=1e-6,
        )


@pytest.mark.parametrize("stft", ["rfft", "matmul"])
def test_frontends_export_to_tflite(rng, stft):
    tf = pytest.importorskip("tensorflow")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    vggish_in = keras.Input((16000,))
    x = VGGishLogMel(stft=stft)(vggish_in)
    vggish_model = keras.Model(vggish_in, keras.layers.Conv3D(2, (1, 3, 3))(x))
    dcase_in = keras.Input((22050,))
    x = DCASELogMel(num_frames=30, stft=stft)(dcase_in)
    dcase_model = keras.Model(dcase_in, keras.layers.Conv2D(2, 3)(x))
    for model in (vggish_model, dcase_model):
        data = _signal(rng, 1, model.input.shape[1], 16000)
        expected = keras.ops.convert_to_numpy(model(data))
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        interpreter = litert.Interpreter(model_content=converter.convert())
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data)
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(output, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stft", ["rfft", "matmul"])
def test_clips_shorter_than_one_frame_are_one_clear_error(stft):
    """Both STFT modes agree: a clip shorter than one frame is a ValueError
    naming the minimum, at build time and in eager calls."""
    for layer, n, minimum in (
        (VGGishLogMel(stft=stft), 399, 400),
        (DCASELogMel(stft=stft), 1000, 1025),
    ):
        with pytest.raises(ValueError, match=f"at least {minimum} samples"):
            layer(np.zeros((1, n), "float32"))
        with pytest.raises(ValueError, match=f"at least {minimum} samples"):
            layer.compute_output_shape((None, n))
    assert tuple(VGGishLogMel(stft=stft)(np.zeros((1, 400), "float32")).shape)[1] == 0
    out = DCASELogMel(stft=stft, num_frames=4)(np.zeros((1, 1000), "float32"))
    assert tuple(out.shape) == (1, 40, 4, 1)
