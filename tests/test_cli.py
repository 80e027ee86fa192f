"""The `keras-filterprune` command line.

A few runs go through a real subprocess (`python -m keras_filterprune`, and the
installed `keras-filterprune` script): exit codes, stdout, the one-line error on
stderr. TensorFlow's start-up costs seconds per process, so everything else calls
`cli.main(argv)` in-process, which returns the exit code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_filterprune import PruningPlan, cli
from tests._timeouts import HANG_GUARD_S

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def run(*args: str, script: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("keras-filterprune", path=os.path.dirname(sys.executable))
    command = [exe] if script else [sys.executable, "-m", "keras_filterprune"]
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=HANG_GUARD_S,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small trained CNN saved compiled, and evaluation data."""
    d = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    prototypes = rng.random((3, 12, 12, 1)).astype("float32")
    y = rng.integers(0, 3, 192)
    x = prototypes[y] + rng.normal(0, 0.2, (192, 12, 12, 1)).astype("float32")
    inputs = keras.Input((12, 12, 1), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    model.save(d / "model.keras")
    np.savez(d / "data.npz", x=x[:64], y=y[:64])
    np.save(d / "rep.npy", x[:32])
    (d / "junk.keras").write_text("not a model")
    return d


# ---------------------------------------------------------------------------
# Through a subprocess
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_help_lists_the_commands():
    result = run("--help", script=True)
    assert result.returncode == 0, result.stderr
    for command in ("score", "prune", "profile", "export", "sensitivity", "demo"):
        assert command in result.stdout


def test_help_imports_neither_keras_nor_tensorflow_and_is_quiet():
    """`--help` parses before any import of Keras or TensorFlow (it answers in
    well under a second here), with nothing on stderr."""
    code = (
        "import sys\n"
        "from keras_filterprune.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['prune', '--help']) == 0\n"
        "heavy = [m for m in ('keras', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "prune" in result.stdout and "--criterion" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "keras_filterprune", "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.slow
def test_a_command_prints_no_tensorflow_start_up_lines(files):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run(
        [sys.executable, "-m", "keras_filterprune", "profile", files / "model.keras"],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.slow
def test_profile_and_score(files):
    result = run("profile", files / "model.keras")
    assert result.returncode == 0, result.stderr
    assert "conv1" in result.stdout and "Total" in result.stdout
    result = run("score", files / "model.keras", "--criterion", "l1_norm")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "criterion: l1_norm" in lines[0]
    assert lines[1].split()[:3] == ["layer", "group", "filters"]
    conv1 = next(line for line in lines if line.startswith("conv1 "))
    assert conv1.split()[2] == "8" and conv1.endswith("prunable")


@pytest.mark.slow
def test_prune_saves_the_model_and_the_plan_then_replays_it(files, tmp_path):
    out, plan = tmp_path / "pruned.keras", tmp_path / "plan.json"
    result = run(
        "prune", files / "model.keras", "-o", out, "--ratio", "0.5",
        "--per-layer", "conv2=0.75", "--plan-out", plan,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "params:" in result.stdout and "MACs:" in result.stdout
    pruned = keras.saving.load_model(out)
    assert pruned.get_layer("conv1").filters == 4
    assert pruned.get_layer("conv2").filters == 4
    assert pruned.compiled  # compiled like the input: ready to fine-tune
    assert PruningPlan.load(plan).kept_filters("conv2") is not None
    again = tmp_path / "again.keras"
    result = run("prune", files / "model.keras", "-o", again, "--plan", plan)
    assert result.returncode == 0, result.stderr
    replayed = keras.saving.load_model(again)
    np.testing.assert_allclose(
        replayed.get_layer("conv2").get_weights()[0],
        pruned.get_layer("conv2").get_weights()[0],
    )


@pytest.mark.slow
def test_export_int8_with_representative_data(files, tmp_path):
    out = tmp_path / "model.tflite"
    result = run(
        "export", files / "model.keras", "--tflite", out,
        "--quantize", "int8", "--representative", files / "rep.npy",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    assert "TFLite (int8)" in result.stdout and "passed" in result.stdout


@pytest.mark.slow
def test_sensitivity_prints_the_table_and_saves_the_plot(files, tmp_path):
    plot = tmp_path / "s.png"
    result = run(
        "sensitivity", files / "model.keras", "--data", files / "data.npz",
        "--ratios", "0.25", "0.5", "--max-drop", "1", "--plot", plot,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| conv1 | 8 |" in result.stdout
    assert "--per-layer conv1=0.5 conv2=0.5" in result.stdout
    assert plot.stat().st_size > 1000


@pytest.mark.slow
def test_missing_model_fails_with_one_line(tmp_path):
    result = run("profile", tmp_path / "nope.keras")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr) == (
        f"keras-filterprune profile: error: model file "
        f"'{tmp_path / 'nope.keras'}' does not exist"
    )


@pytest.mark.slow
def test_corrupt_model_fails_with_one_line(files):
    result = run("score", files / "junk.keras")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith(
        "keras-filterprune score: error: cannot load model"
    )


@pytest.mark.slow
def test_usage_errors_exit_2(files):
    result = run("prune", files / "model.keras")  # no -o
    assert result.returncode == 2
    assert "required: -o/--output" in result.stderr
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# ---------------------------------------------------------------------------
# In-process
# ---------------------------------------------------------------------------


def test_version_and_help_in_process(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("keras-filterprune ")
    assert cli.main(["prune", "--help"]) == 0
    assert "--target-macs" in capsys.readouterr().out
    assert cli.main([]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prune", "M", "-o", "o.keras", "--ratio", "1.5"], "must be in [0, 1)"),
        (["prune", "M", "-o", "o.keras", "--ratio", "x"], "not a number"),
        (["prune", "M", "-o", "o.keras", "--per-layer", "conv1"], "LAYER=RATIO"),
        (["prune", "M", "-o", "o.keras", "--target-macs", "lots"], "not a count"),
        (["prune", "M", "-o", "o.keras", "--round-to", "0"], "must be >= 1"),
        (["prune", "M", "-o", "o.keras", "--max-ratio", "0"], "must be in (0, 1]"),
        (["prune", "M", "-o", "o.keras", "--max-ratio", "x"], "not a number"),
        (
            ["prune", "M", "-o", "o.keras", "--target-macs", "1M",
             "--target-params", "1k"],
            "not allowed with",
        ),
        (
            ["prune", "M", "-o", "o.keras", "--plan", "p.json", "--plan-out", "q"],
            "not allowed with",
        ),
        (
            ["prune", "M", "-o", "o.keras", "--plan", "p.json", "--ratio", "0.3"],
            "cannot be combined with --ratio",
        ),
        (["sensitivity", "M"], "required: --data"),
        (["sensitivity", "M", "--data", "d", "--ratios", "0"], "must be in (0, 1)"),
        (["export", "M", "--tflite", "o.tflite", "--quantize", "int4"], "choice"),
    ],
)  # fmt: skip
def test_usage_errors_in_process(capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_failures_in_process(files, tmp_path, capsys):
    model = str(files / "model.keras")
    cases = [
        (["prune", model, "-o", str(tmp_path / "o.h5")], "must end with .keras"),
        (["prune", model, "-o", str(tmp_path / "x" / "o.keras")], "does not exist"),
        (
            ["prune", model, "-o", str(tmp_path / "o.keras"), "--exclude", "nope"],
            "ValueError: `exclude` names layer 'nope'",
        ),
        (
            ["prune", model, "-o", str(tmp_path / "o.keras"), "--plan", model],
            "Cannot read pruning plan",
        ),
        (
            ["prune", model, "-o", str(tmp_path / "o.keras"), "--criterion", "apoz"],
            "needs `data`",
        ),
        (
            [
                "export",
                model,
                "--tflite",
                str(tmp_path / "m.tflite"),
                "--quantize",
                "int8",
            ],
            "needs --representative",
        ),  # fmt: skip
        (["export", model, "--tflite", str(tmp_path / "m.tfl")], "'.tflite'"),
        (["sensitivity", model, "--data", str(tmp_path / "none.npz")], "data file"),
        (["sensitivity", model, "--data", str(files / "rep.npy")], "x only"),
        (["profile", str(tmp_path)], "not a Keras model file"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 1, argv
        line = _error(capsys)
        assert line.startswith(f"keras-filterprune {argv[0]}: error: "), line
        assert message in line, (argv, line)


def test_debug_raises_instead_of_printing(tmp_path):
    with pytest.raises(cli.CommandError, match="must end with .keras"):
        cli.main(["--debug", "prune", str(tmp_path / "m.keras"), "-o", "x.h5"])


def test_prune_to_a_percentage_of_the_macs(files, tmp_path, capsys):
    from keras_filterprune import count_macs

    out = tmp_path / "half.keras"
    argv = ["prune", str(files / "model.keras"), "-o", str(out), "--target-macs", "50%"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    macs = count_macs(keras.saving.load_model(files / "model.keras"))
    assert count_macs(keras.saving.load_model(out)) <= 0.5 * macs


def test_prune_options_in_process(files, tmp_path, capsys):
    from keras_filterprune import count_macs

    out = tmp_path / "t.keras"
    macs = count_macs(keras.saving.load_model(files / "model.keras"))
    argv = [
        "prune", str(files / "model.keras"), "-o", str(out),
        "--target-macs", f"{0.8 * macs / 1000:.1f}k", "--round-to", "2",
        "--exclude", "conv1",
        "--criterion", "apoz", "--data", str(files / "data.npz"),
    ]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "criterion=apoz" in text
    pruned = keras.saving.load_model(out)
    assert pruned.get_layer("conv1").filters == 8  # excluded
    assert pruned.get_layer("conv2").filters % 2 == 0
    assert pruned.get_layer("conv2").filters < 16
    assert count_macs(pruned) <= 0.8 * macs


def _recalibrated_like_the_api(out, model_path, x):
    """The CLI's pruned model at `out` has the BatchNorm statistics that
    `prune_keras_model(model, 0.5, calibration_data=x)` gives; returns it and
    the original model."""
    from keras_filterprune import prune_keras_model

    pruned = keras.saving.load_model(out)
    model = keras.saving.load_model(model_path)
    expected = prune_keras_model(model, 0.5, calibration_data=x)
    np.testing.assert_allclose(
        pruned.get_layer("bn1").moving_mean.numpy(),
        expected.get_layer("bn1").moving_mean.numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    return pruned, model


def test_prune_with_calibration_data(files, tmp_path, capsys):
    from keras_filterprune import prune_keras_model

    out = tmp_path / "c.keras"
    argv = [
        "prune", str(files / "model.keras"), "-o", str(out), "--ratio", "0.5",
        "--calibration-data", str(files / "data.npz"),
    ]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    pruned, model = _recalibrated_like_the_api(
        out, files / "model.keras", np.load(files / "data.npz")["x"]
    )
    stale = prune_keras_model(model, 0.5)
    assert not np.allclose(
        pruned.get_layer("bn1").moving_mean.numpy(),
        stale.get_layer("bn1").moving_mean.numpy(),
    )


def test_profile_json_and_score_active(files, capsys):
    import json

    assert cli.main(["profile", str(files / "model.keras"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (
        data["total_params"]
        == keras.saving.load_model(files / "model.keras").count_params()
    )
    argv = ["score", str(files / "model.keras"), "--criterion", "mean_activation"]
    assert cli.main([*argv, "--data", str(files / "data.npz")]) == 0
    assert "mean_activation" in capsys.readouterr().out


def test_export_from_a_directory_of_images(files, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        keras.utils.save_img(
            images / f"{i}.png", rng.integers(0, 255, (20, 20, 1)).astype("uint8")
        )
    out = tmp_path / "m.tflite"
    argv = ["export", str(files / "model.keras"), "--tflite", str(out)]
    argv += ["--quantize", "int8", "--representative", str(images), "--benchmark"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "TFLite (int8)" in text and "passed" in text and "median" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    argv[-2] = str(empty)
    assert cli.main(argv) == 1
    assert "no images" in _error(capsys)


def test_sensitivity_json_in_process(files, tmp_path, capsys):
    import json

    out = tmp_path / "curves.json"
    argv = ["sensitivity", str(files / "model.keras"), "--data"]
    argv += [str(files / "data.npz"), "--ratios", "0.5", "--json", str(out)]
    assert cli.main(argv) == 0
    assert json.loads(out.read_text())["metric"] == "accuracy"
    argv[-1] = str(tmp_path / "missing" / "c.json")
    assert cli.main(argv) == 1
    assert "--json" in _error(capsys)


def test_prune_norms_in_process(tmp_path, capsys):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.LayerNormalization(name="ln")(L.Conv2D(8, 3, name="stem")(inputs))
    x = L.Conv2D(4, 3, name="c")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "ln.keras")
    out = tmp_path / "pruned.keras"
    argv = ["prune", str(tmp_path / "ln.keras"), "-o", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert keras.saving.load_model(out).get_layer("stem").filters == 8  # frozen
    assert cli.main([*argv, "--prune-norms"]) == 0, capsys.readouterr().err
    assert "prune_norms=True" in capsys.readouterr().out
    assert keras.saving.load_model(out).get_layer("stem").filters == 4


# ---------------------------------------------------------------------------
# Outputs never overwrite an input or each other
# ---------------------------------------------------------------------------


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def workdir(files, tmp_path, monkeypatch):
    """A copy of the model and data in a fresh directory, the current one."""
    for name in ("model.keras", "data.npz", "rep.npy"):
        shutil.copy(files / name, tmp_path / name)
    (tmp_path / "sub").mkdir()
    (tmp_path / "table.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# (argv, the two arguments named, the path named): M is the model.
CLASHES = [
    # an output that is an input
    (["prune", "M", "-o", "model.keras"], ("-o/--output", "MODEL.keras")),
    (["prune", "M", "-o", "./sub/../model.keras"], ("-o/--output", "MODEL.keras")),
    (["prune", "M", "-o", "link.keras"], ("-o/--output", "MODEL.keras")),
    (["prune", "M", "-o", "hard.keras"], ("-o/--output", "MODEL.keras")),
    (["prune", "M", "-o", "o.keras", "--plan-out", "model.keras"],
     ("--plan-out", "MODEL.keras")),
    (["prune", "M", "-o", "o.keras", "--data", "data.npz", "--plan-out",
      "sub/../data.npz"], ("--plan-out", "--data")),
    (["prune", "M", "-o", "o.keras", "--calibration-data", "rep.npy",
      "--plan-out", "rep.npy"], ("--plan-out", "--calibration-data")),
    (["prune", "M", "-o", "o.keras", "--target-latency", "50%",
      "--latency-table", "table.json", "--plan-out", "table.json"],
     ("--plan-out", "--latency-table")),
    (["prune", "M", "-o", "plan.keras", "--plan", "plan.keras"],
     ("-o/--output", "--plan")),
    (["sensitivity", "M", "--data", "data.npz", "--json", "model.keras"],
     ("--json", "MODEL.keras")),
    (["sensitivity", "M", "--data", "data.npz", "--plot", "./data.npz"],
     ("--plot", "--data")),
    (["latency", "M", "-o", "link.keras"], ("-o/--output", "MODEL.keras")),
    (["export", "M", "--tflite", "model.keras"], ("--tflite", "MODEL.keras")),
    (["export", "M", "--tflite", "r.tflite", "--representative", "r.tflite"],
     ("--tflite", "--representative")),
    (["demo", "--data-dir", "sub", "--output-dir", "./sub/"],
     ("--output-dir", "--data-dir")),
    # two outputs that are one file
    (["prune", "M", "-o", "o.keras", "--plan-out", "o.keras"],
     ("-o/--output", "--plan-out")),
    (["prune", "M", "-o", "o.keras", "--plan-out", "sub/../o.keras"],
     ("-o/--output", "--plan-out")),
    (["sensitivity", "M", "--data", "data.npz", "--plot", "m.png", "--json",
      "m.png"], ("--plot", "--json")),
    (["sensitivity", "M", "--data", "data.npz", "--plot", "m.png", "--json",
      "dangling.json"], ("--plot", "--json")),
    (["prune", "M", "-o", "o.keras", "--target-latency", "50%", "--latency-table",
      "t.json", "--importance", "c.json", "--plan-out", "c.json"],
     ("--plan-out", "--importance")),
]  # fmt: skip


def test_importance_taylor_is_not_a_path():
    argv = ["prune", "m.keras", "-o", "o.keras", "--plan-out", "taylor"]
    argv += ["--target-latency", "50%", "--latency-table", "t.json"]
    args = cli.build_parser().parse_args([*argv, "--importance", "taylor"])
    assert cli._path_clash(args) is None


@pytest.mark.parametrize("argv, named", CLASHES)
def test_an_output_that_is_an_input_or_another_output_is_refused(
    workdir, capsys, argv, named
):
    """Refused as a usage error before any work: the model stays byte-identical
    and no file appears (the command would have run, and destroyed a file)."""
    os.symlink("model.keras", "link.keras")
    os.link("model.keras", "hard.keras")
    os.symlink("m.png", "dangling.json")  # resolves to --plot's path
    argv = [str(workdir / "model.keras") if a == "M" else a for a in argv]
    before = {p: _digest(p) for p in workdir.rglob("*") if p.is_file()}
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"keras-filterprune {argv[0]}: error: "), err
    for option in named:
        assert f"{option} '" in err, err
    assert "destroy the input" in err or "one would overwrite the other" in err
    after = {p: _digest(p) for p in workdir.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


def test_every_path_argument_is_checked_for_clashes():
    """Each command's file and directory arguments are listed as an input or
    an output of that command (a new one cannot be forgotten)."""
    import argparse

    parser = cli.build_parser()
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for name, sub in commands.items():
        listed = {a for a, _ in cli._INPUTS.get(name, ())}
        listed |= {a for a, _ in cli._OUTPUTS.get(name, ())}
        for action in sub._actions:
            metavar = str(action.metavar or "")
            if "." in metavar or "DIR" in metavar or "FILE" in metavar:
                assert action.dest in listed, (name, action.dest)


def test_outputs_that_differ_still_work(workdir, capsys):
    argv = ["prune", "model.keras", "-o", "sub/o.keras", "--ratio", "0.5"]
    assert cli.main([*argv, "--plan-out", "sub/o.json"]) == 0, capsys.readouterr()
    assert (workdir / "sub" / "o.keras").is_file()
    assert (workdir / "sub" / "o.json").is_file()


# ---------------------------------------------------------------------------
# Data files: .npz or .npy of numbers, nothing else, never unpickled
# ---------------------------------------------------------------------------


def test_an_npy_of_inputs_is_calibration_data(workdir, capsys):
    argv = ["prune", "model.keras", "-o", "c.keras", "--ratio", "0.5"]
    assert cli.main([*argv, "--calibration-data", "rep.npy"]) == 0, (
        capsys.readouterr().err
    )
    _recalibrated_like_the_api(
        workdir / "c.keras", workdir / "model.keras", np.load(workdir / "rep.npy")
    )


def _save_data_files(d) -> None:
    (d / "notes.txt").write_text("hello")
    objects = np.array([{"a": 1}] * 4, dtype=object)
    np.savez(d / "objx.npz", x=objects, y=np.zeros(4))
    np.save(d / "objx.npy", objects, allow_pickle=True)
    (d / "truncated.npz").write_bytes((d / "data.npz").read_bytes()[:200])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prune", "M", "-o", "o.keras", "--calibration-data", "notes.txt"],
         "'notes.txt' is not a NumPy array file of numbers: it is neither"),
        (["prune", "M", "-o", "o.keras", "--criterion", "apoz", "--data",
          "objx.npz"], "'objx.npz' is not a NumPy array file of numbers: its "
         "array 'x' holds Python objects (dtype object)"),
        (["prune", "M", "-o", "o.keras", "--calibration-data", "objx.npy"],
         "'objx.npy' is not a NumPy array file of numbers: its array holds "
         "Python objects"),
        (["prune", "M", "-o", "o.keras", "--calibration-data", "truncated.npz"],
         "'truncated.npz' is not a NumPy array file of numbers"),
        (["prune", "M", "-o", "o.keras", "--calibration-data", "model.keras"],
         "is not an array"),
        (["prune", "M", "-o", "o.keras", "--calibration-data", "sub"],
         "'sub' is a directory"),
        (["score", "M", "--criterion", "apoz", "--data", "notes.txt"],
         "not a NumPy array file"),
        (["export", "M", "--tflite", "o.tflite", "--representative", "notes.txt"],
         "'notes.txt' is not a NumPy array file of numbers"),
        (["sensitivity", "M", "--data", "rep.npy"],
         "'rep.npy' is an .npy file: it holds inputs x only; labels are needed "
         "here: save x and y with np.savez(path, x=x, y=y)"),
    ],
)  # fmt: skip
def test_data_files_that_are_not_arrays_of_numbers(workdir, capsys, argv, message):
    _save_data_files(workdir)
    argv = [str(workdir / "model.keras") if a == "M" else a for a in argv]
    before = _digest(workdir / "model.keras")
    assert cli.main(argv) == 1
    line = _error(capsys)
    assert line.startswith(f"keras-filterprune {argv[0]}: error: "), line
    assert message in line, line
    assert "allow_pickle" not in line and "pickle.load" not in line
    assert _digest(workdir / "model.keras") == before
    assert not (workdir / "o.keras").exists() and not (workdir / "o.tflite").exists()
