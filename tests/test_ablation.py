"""The MLP-activation ablation: aggregation math, a tiny end-to-end ablation, resume and skipping."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from xtts_jax.errors import UserError
from xtts_jax.models.gpt_config import get_config
from xtts_jax.train import ablation
from xtts_jax.train.ablation import AblationConfig, mean_std, summarize
from xtts_jax.train.optim import TrainConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "ablate_mlp_activation.py"


def _fake(activation, seed, loss, curve=(3.0, 2.0)):
    """A result record as run_one writes it, with a 2-point val curve ending at ``loss``."""
    points = [{"step": 10 * (i + 1), "tokens": 640 * (i + 1), "val_loss": v} for i, v in enumerate((*curve[:-1], loss))]
    return {"activation": activation, "seed": seed, "steps": 20, "tokens": 1280,
            "params": {"total": 100, "non_embedding": 50, "mlp_hidden": 8}, "final_val_loss": loss,
            "tokens_per_s": 1000.0 + seed, "wall_s": 1.0, "val_curve": points, "train_curve": []}


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, std = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert mean == 5.0 and std == pytest.approx(np.sqrt(32 / 7))
    assert mean_std([4.5]) == (4.5, 0.0)


def test_summarize_on_known_numbers():
    results = [_fake("gelu_tanh", s, v) for s, v in enumerate([1.0, 2.0, 3.0])]
    results += [_fake("relu", s, v) for s, v in enumerate([2.0, 3.5, 3.5])]
    results += [_fake("swiglu", s, v) for s, v in enumerate([10.0, 10.5, 11.0])]
    summary = summarize(results)
    assert summary["baseline"] == "gelu_tanh"
    base, relu, swiglu = summary["rows"]
    assert (base["mean"], base["std"]) == (2.0, 1.0)
    assert relu["mean"] == 3.0 and relu["std"] == pytest.approx(np.sqrt(0.75))
    # Paired by seed: differences 1.0, 1.5, 0.5.
    assert relu["delta_vs_baseline"] == pytest.approx(1.0) and relu["delta_std"] == pytest.approx(0.5)
    assert swiglu["delta_vs_baseline"] == pytest.approx(8.5)
    # A paired t-test on those differences: t = 1 / (0.5 / sqrt 3), two-sided p from t with 2 df.
    assert relu["paired_t"] == pytest.approx(2 * np.sqrt(3))
    for row, values in ((relu, [2.0, 3.5, 3.5]), (swiglu, [10.0, 10.5, 11.0])):
        reference = stats.ttest_rel(values, [1.0, 2.0, 3.0])
        assert row["paired_t"] == pytest.approx(reference.statistic, rel=1e-9)
        assert row["p_value"] == pytest.approx(reference.pvalue, rel=1e-9)
    assert base["paired_t"] is None and base["p_value"] is None  # the baseline against itself
    assert base["tokens_per_s"] == 1001.0
    # The curve: mean and std over seeds at each eval step; the first point is 3.0 for every seed.
    assert relu["curve"]["tokens"] == [640, 1280]
    np.testing.assert_allclose(relu["curve"]["mean"], [3.0, 3.0])
    np.testing.assert_allclose(relu["curve"]["std"], [0.0, np.sqrt(0.75)])
    table = ablation.markdown_table(summary)
    assert f"| relu | 8 | 100 | 50 | 3.0000 ± 0.8660 | +1.0000 ± 0.5000 | t = +3.46, p = {relu['p_value']:.3f} | 3 |" in table
    assert "| gelu_tanh | 8 | 100 | 50 | 2.0000 ± 1.0000 | — | — | 3 |" in table


def test_paired_t_test_on_the_committed_relu_numbers():
    """The committed table's relu case: lower on every seed by a steady amount, with a seed spread
    wider than the gap: t is large, and p is what 3 seeds allow (the old band rule said only "no")."""
    base = [4.1646, 4.3624, 4.3291]
    relu = [4.0740, 4.1933, 4.0513]
    row = summarize([_fake("gelu_tanh", s, v) for s, v in enumerate(base)]
                    + [_fake("relu", s, v) for s, v in enumerate(relu)])["rows"][1]
    assert row["paired_t"] == pytest.approx(stats.ttest_rel(relu, base).statistic)
    assert row["paired_t"] < -3 and 0.05 < row["p_value"] < 0.1  # consistent, yet 3 seeds leave p = 0.08


def _tokens(path: Path, n: int, seed: int) -> None:
    """A learnable stream over 40 ids (a noisy walk), stored as prepare stores tokens."""
    steps = np.random.default_rng(seed).choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    (np.cumsum(steps) % 40 + 100).astype(np.uint16).tofile(path)  # ids 100..139: compacted to 40


def _spec(**train) -> AblationConfig:
    gpt = get_config("nano", n_layer=1, n_head=2, n_embd=32, block_size=16, scan_layers=False)
    base = dict(steps=4, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=1, eval_every=2, eval_steps=2,
                ckpt_every=2, keep_last=1, log_every=1)
    return AblationConfig(gpt, TrainConfig(**{**base, **train}), ("gelu_tanh", "swiglu"), (0, 1))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-activation x 2-seed ablation of 4 steps per run, and its report."""
    root = tmp_path_factory.mktemp("ablation")
    data = root / "data"
    data.mkdir()
    _tokens(data / "train.bin", 4000, 0)
    _tokens(data / "val.bin", 1000, 1)
    out = root / "out"
    results = ablation.run_ablation(_spec(), data, out, log=lambda s: None)
    ablation.write_report(results, out, {"machine": "test"})
    return data, out, results


def test_tiny_ablation_end_to_end(finished):
    data, out, results = finished
    assert [(r["activation"], r["seed"]) for r in results] == [
        ("gelu_tanh", 0), ("swiglu", 0), ("gelu_tanh", 1), ("swiglu", 1)]
    for r in results:
        assert [p["step"] for p in r["val_curve"]] == [2, 4]
        assert r["tokens"] == 4 * 4 * 16 and np.isfinite(r["final_val_loss"])
        assert r["final_val_loss"] < np.log(40) + 0.5  # learning has started from ~uniform over 40 ids
        config = json.loads((out / "runs" / r["activation"] / f"seed{r['seed']}" / "config.json").read_text())
        assert config["train"]["seed"] == r["seed"]  # data order and init key follow the seed index
        assert config["task"]["gpt"]["mlp_activation"] == r["activation"]
        assert config["task"]["gpt"]["vocab_size"] == 40
    totals = [r["params"]["total"] for r in results]
    assert max(totals) / min(totals) - 1 <= 0.01
    report = json.loads((out / "results.json").read_text())
    rows = {row["activation"]: row for row in report["summary"]["rows"]}
    swiglu = [r["final_val_loss"] for r in results if r["activation"] == "swiglu"]
    assert rows["swiglu"]["mean"] == pytest.approx(np.mean(swiglu))
    assert rows["swiglu"]["std"] == pytest.approx(np.std(swiglu, ddof=1))
    assert "| swiglu |" in (out / "results.md").read_text()
    assert (out / "val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_skips_finished_runs_and_continues_a_killed_one(finished, monkeypatch):
    data, out, results = finished
    # Every run finished: nothing may be trained again.
    monkeypatch.setattr(ablation, "Trainer", lambda *a, **k: pytest.fail("a finished run was retrained"))
    assert ablation.run_ablation(_spec(), data, out, log=lambda s: None) == results
    monkeypatch.undo()

    # "Kill" swiglu seed 1 after its step-2 checkpoint: no done-marker, no step-4 checkpoint.
    run_dir = out / "runs" / "swiglu" / "seed1"
    (run_dir / ablation.DONE_FILE).unlink()
    shutil.rmtree(run_dir / "checkpoints" / "4")
    built = []
    real_trainer = ablation.Trainer
    monkeypatch.setattr(ablation, "Trainer", lambda *a, **k: built.append(k["train_data"]) or real_trainer(*a, **k))
    again = ablation.run_ablation(_spec(), data, out, log=lambda s: None)
    assert len(built) == 1  # only the killed run
    # Resumed from step 2, it ends where the uninterrupted run ended (batches are pure in (seed, step)).
    np.testing.assert_allclose(again[-1]["final_val_loss"], results[-1]["final_val_loss"], rtol=1e-5)
    assert again[:-1] == results[:-1]


def test_other_settings_in_the_same_folder_are_refused(finished):
    data, out, _ = finished
    with pytest.raises(UserError, match="other settings"):
        ablation.run_ablation(_spec(steps=6), data, out, log=lambda s: None)


def _recipe():
    spec = importlib.util.spec_from_file_location("ablate_mlp_activation", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def test_recipe_rejects_bad_usage(finished, tmp_path, capsys):
    data, _, _ = finished
    for argv in (["--steps", "0"], ["--data", str(data), "--val", "v.txt"], ["--data", str(tmp_path / "none.txt")]):
        with pytest.raises(SystemExit) as exit_info:
            _recipe().main([*argv, "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_recipe_presets_have_matched_parameters():
    recipe = _recipe()
    for name, (gpt, _, compact) in recipe.CONFIGS.items():
        vocab = 7661 if compact else gpt.vocab_size
        counts = {a: ablation.param_counts(c) for a, c in ablation.run_configs(
            AblationConfig(gpt, TrainConfig()), vocab).items()}
        ablation.check_matched(counts)  # raises past 1%
        assert len(counts) == 7, name


def test_spec_round_trips_through_json():
    spec = _spec()
    assert AblationConfig.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(UserError, match="unknown"):
        AblationConfig(spec.gpt, spec.train, ("gelu", "tanh"))
