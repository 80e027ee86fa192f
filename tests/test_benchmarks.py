"""Smoke runs of the benchmark scripts (`--quick`), so that they cannot rot.

Each script runs in its own process, as a user runs it, and writes its Markdown
report to a temporary file (never over `benchmarks/results/`). The numbers of a
quick run are meaningless; only the machinery is checked.
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests._timeouts import HANG_GUARD_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _run(script: str, tmp_path, *extra: str) -> str:
    output = tmp_path / "report.md"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), "--quick"]
        + ["--output", str(output), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=HANG_GUARD_S,  # a hang, not a slow machine
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = output.read_text(encoding="utf-8")
    # The header every report carries, and at least one table.
    for needle in ("- Command: `python benchmarks/", "wall time", "Versions:"):
        assert needle in text
    assert "|---|" in text
    assert text in result.stdout  # the table is printed too
    return text


needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist is not installed",
)


@needs_fashion_mnist
def test_bench_accuracy_images_quick(tmp_path):
    text = _run("bench_accuracy_images.py", tmp_path)
    assert "## vgg_style" in text and "## resnet8_style" in text
    assert "`l1_norm`" in text and "`mean_activation`" in text
    assert "Sensitivity analysis" in text


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_bench_accuracy_audio_quick(tmp_path):
    text = _run(
        "bench_accuracy_audio.py", tmp_path, "--cache-dir", str(tmp_path / "digits")
    )
    assert "## dcase21_style" in text and "## vggish_style" in text
    assert "test speakers (held out)" in text


def test_bench_scoring_quick(tmp_path):
    text = _run("bench_scoring.py", tmp_path)
    assert "`operator_norm`" in text and "`mean_activation`" in text
    assert "÷ operator_norm" in text


@needs_fashion_mnist
def test_bench_callback_quick(tmp_path):
    text = _run("bench_callback.py", tmp_path, "--lr-decay", "cosine")
    assert "decayed to 0 by a cosine" in text
    for schedule in ("no pruning", "one-shot", "iterative (hard)", "soft (SFP)"):
        assert schedule in text


@needs_fashion_mnist
def test_bench_recovery_quick(tmp_path):
    # A MAC budget instead of a ratio: the planner solves the ratio per baseline.
    text = _run("bench_recovery.py", tmp_path, "--target-macs", "0.5")
    for column in ("pruned (%)", "recalibrated (%)", "fine-tuned (%)", "distilled"):
        assert column in text
    assert "distilled − fine-tuned" in text and "original, E + F epochs" in text
    assert "| MACs ≤ 0.5 |" in text


@needs_fashion_mnist
def test_bench_distill_quick(tmp_path):
    text = _run("bench_distill.py", tmp_path)
    assert "| **fine-tune (alpha = 0)** |" in text
    assert "| T = 2, alpha = 0.3 |" in text and "worst-net Δ (pt)" in text
    assert "`vgg` T = 2, alpha = 0.3" in text  # the paired differences


@needs_fashion_mnist
def test_bench_examples_quick(tmp_path):
    text = _run("bench_examples.py", tmp_path, "--examples", "mnist", "xception")
    assert "| mnist | 1 |" in text and "| xception | 1 |" in text
    assert "unpruned, BN recalibrated" in text and "Distiller − fine-tune" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ratios", "0.3", "--target-macs", "0.5"], "not both"),
        (["--target-macs", "50"], "fractions in (0, 1)"),
    ],
)
def test_bench_recovery_rejects_bad_budgets(args, message):
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "bench_recovery.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 2 and message in result.stderr


def test_bench_hub_quick(tmp_path):
    pytest.importorskip("keras_hub")
    text = _run("bench_hub.py", tmp_path)
    assert "| VGG |" in text and "| ImageClassifier(VGG) |" in text
    # MobileNetV3's blocks are composite layers: traced inside, pruned, and their
    # convolutions counted as a count made while the model runs counts them.
    row = next(line for line in text.splitlines() if line.startswith("| MobileNetV3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[4]) < 0.6, row  # MACs ratio
    assert abs(float(cells[9]) - 1.0) < 0.01, row  # per-call check


def test_bench_audio_pipeline_quick(tmp_path):
    pytest.importorskip("soundfile")
    text = _run("bench_audio_pipeline.py", tmp_path)
    assert "training from the feature cache" in text and "peak RSS" in text


def test_bench_cnn14_quick(tmp_path):
    text = _run("bench_cnn14.py", tmp_path)
    assert "| MACs |" in text and "CNN14 + PANNsLogMel" in text


@needs_fashion_mnist
def test_bench_latency_plan_quick(tmp_path):
    text = _run("bench_latency_plan.py", tmp_path)
    assert "## resnet8_cifar (fp32)" in text
    # A tiny model timed on a loaded machine may not reach a target: then the
    # report says so instead of failing.
    rows = [f"| 0.7 | {plan}" for plan in ("latency-aware", "calibrated")]
    rows.append("| 0.7 | uniform ")  # --quick: the first target only
    assert all(r in text for r in rows) or "| 0.7 | unreachable |" in text
    assert "One layer's latency against its width" in text
    assert (tmp_path / "report_steps.png").stat().st_size > 0


@needs_fashion_mnist
def test_bench_latency_accuracy_quick(tmp_path):
    pytest.importorskip("ai_edge_litert")
    text = _run("bench_latency_accuracy.py", tmp_path)
    assert "measured latency ratio" in text and "latency+taylor" in text
    assert "Latency plans: `calibrate_latency_plan`" in text
