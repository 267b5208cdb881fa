import json
import shutil
import statistics

import pytest
from conftest import REPO, assert_clean_error, need, run_module, textured_image
from PIL import Image


def test_color_table_measures_bicubic_like_the_published_protocol(data):
    set5 = need(data / "Set5" / "x3")
    out = run_module("benchmarks.color_table", "--dataset", set5, "--scale", 3)
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:6]]
            for line in out.stdout.splitlines() if line.startswith("| ") and "method" not in line}
    reference = json.loads((data / "reference_psnr.json").read_text())["Set5_x3"]["Bicubic"]["psnr_mean"]
    assert rows["bicubic"][0] == pytest.approx(reference, abs=0.01)  # Y of the bicubic RGB file
    y_only = next(v for k, v in rows.items() if k.startswith("srcnn_x3.pth"))
    assert y_only[0] > rows["bicubic"][0] + 1  # the network restores Y ...
    assert y_only[1:3] == pytest.approx(rows["bicubic"][1:3], abs=0.05)  # ... and keeps bicubic Cb/Cr


def test_color_table_takes_its_scale_s_weights_and_says_when_told_others(tmp_path):
    Image.fromarray(textured_image(24, 24)).save(tmp_path / "a.png")
    default = run_module("benchmarks.color_table", "--dataset", tmp_path, "--scale", 2)
    assert default.returncode == 0 and "| srcnn_x2.pth (Y only" in default.stdout, default.stderr
    assert "warning" not in default.stderr
    other = run_module("benchmarks.color_table", "--dataset", tmp_path, "--scale", 2, "--weights-file",
                       REPO / "weights" / "srcnn_x3.pth")
    assert other.returncode == 0 and "srcnn_x3.pth was trained for x3, used here at x2" in other.stderr
    assert_clean_error(run_module("benchmarks.color_table", "--dataset", tmp_path / "nowhere"), "nowhere")


def test_eval_benchmarks_rewrites_the_readme_table_only_for_the_shipped_weights(tmp_path):
    """Other weights' numbers go to their own --output-dir (results/ is refused), never under README's
    "shipped weights" heading."""
    (tmp_path / "weights").mkdir()
    for scale in (2, 3, 4):
        shutil.copy(REPO / "weights" / f"srcnn_x{scale}.pth", tmp_path / "weights")
        for name in ("Set5", "Set14"):
            (tmp_path / name / f"x{scale}").mkdir(parents=True)
            Image.fromarray(textured_image(24, 24, seed=scale)).save(tmp_path / name / f"x{scale}" / "a.png")
    readme, table = (REPO / "README.md").read_bytes(), (REPO / "results" / "benchmarks.json").read_bytes()
    refused = run_module("benchmarks.eval_benchmarks", "--data", tmp_path, "--weights-dir", tmp_path / "weights")
    assert_clean_error(refused, "hold the shipped weights' table", "another --output-dir")
    assert (REPO / "results" / "benchmarks.json").read_bytes() == table
    out = run_module("benchmarks.eval_benchmarks", "--data", tmp_path, "--weights-dir", tmp_path / "weights",
                     "--output-dir", tmp_path / "results", timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(json.loads((tmp_path / "results" / "benchmarks.json").read_text())) == 6
    assert (REPO / "README.md").read_bytes() == readme


def test_curves_plot_draws_each_papers_target_only_where_there_is_one(tmp_path):
    """The shipped training logs, plotted: FSRCNN x3's chain and its recipe's run (a folder not named after
    the model) have their paper's red line; the RGB model and the robust recipe, selected on SunHays80, none."""
    import numpy as np
    from PIL import Image

    output = tmp_path / "curves.png"
    training = REPO / "weights" / "training"
    out = run_module("benchmarks.plot_curves", training / "fsrcnn_x3", training / "srcnn_x3_rgb",
                     training / "fsrcnn_x3_recipe", training / "fsrcnn_real_x3_recipe", "--output", output)
    assert out.returncode == 0, out.stderr
    sheet = np.asarray(Image.open(output).convert("RGB")).astype(int)
    assert sheet.shape == (600, 1260, 3)  # 420x300 panels, three to a row
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 60) & (sheet[..., 2] < 60)
    panels = [red[row * 300:(row + 1) * 300, column * 420:(column + 1) * 420] for row, column in ((0, 0), (0, 1), (0, 2), (1, 0))]
    assert [panel.sum() > 100 for panel in panels] == [True, False, True, False]
    assert panels[1].sum() == 0 and panels[3].sum() == 0
    # those runs predate train.py's training clock: --clock says so in one line
    assert_clean_error(run_module("benchmarks.plot_curves", REPO / "weights" / "training" / "fsrcnn_x3", "--clock",
                                  "--output", output), "no time/train_seconds")


@pytest.mark.parametrize("mode", ["reflect", "zeros", "replicate per layer"])
def test_border_fills_change_only_pixels_that_see_the_border(mode):
    """benchmarks/border_modes.py's fills: "replicate" is test.py's own inference, and every other fill
    changes the output only within the receptive-field radius (8 pixels) of the image edge."""
    import torch
    from benchmarks.border_modes import BorderFill
    from models import SRCNN

    torch.manual_seed(0)
    model = SRCNN(padding="valid").eval()
    bicubic = torch.rand(1, 1, 40, 44)
    with torch.no_grad():
        shipped = model.super_resolve(bicubic)
        assert torch.equal(BorderFill(model, "replicate").super_resolve(bicubic), shipped)
        filled = BorderFill(model, mode).super_resolve(bicubic)
    assert filled.shape == shipped.shape
    r = model.halo
    assert torch.allclose(filled[..., r:-r, r:-r], shipped[..., r:-r, r:-r], atol=1e-6)
    assert (filled - shipped).abs().max() > 1e-4


def test_run_history_scores_each_archived_run_in_order(data, tmp_path):
    """benchmarks/run_history.py on the last two archived srcnn_x4 runs: rows in the order the runs ran,
    every epoch each trained summed (65, then 95), and each Set5 PSNR equal to the validation PSNR
    train.py stored in that run's best.pth (the same protocol through train.py's own code)."""
    import shutil

    import torch
    from benchmarks.run_history import history, table

    need(data / "Set14" / "x4")
    runs = [REPO / "weights" / "training" / "srcnn_x4" / name for name in ("gpu7", "cpu_downscaled6")]
    folder = tmp_path / "srcnn_x4"
    for run in reversed(runs):  # copied newest first: the order must come from the event files, not the copy
        shutil.copytree(run, folder / run.name)
    rows = history(folder, data)
    assert [r["run"] for r in rows] == ["gpu7", "cpu_downscaled6"]
    assert [round(r["epochs"]) for r in rows] == [65, 160]
    for row, run in zip(rows, runs):
        stored = torch.load(run / "best.pth", map_location="cpu", weights_only=True)["meta"]["val_psnr"]
        assert row["Set5"] == pytest.approx(stored, abs=2e-3)
        assert 27.3 < row["Set14"] < 27.7
    assert table(rows).splitlines()[-1] == "| paper, 9-5-5 ImageNet | | 30.49 | 27.50 |"


def test_end_to_end_times_every_command_and_its_ratio_follows_the_medians(peers, tmp_path):
    """benchmarks/end_to_end.py on a 96x54 photo and a folder of two, one pair each: every command ran,
    checked, and timed; each ratio is its median over the baseline's, each rate images over its median."""
    output = tmp_path / "end_to_end.json"
    out = run_module("benchmarks.end_to_end", "--pairs", 1, "--folder-pairs", 1, "--folder-size", 2, "--size", "96x54",
                     "--peers", peers, "--work-dir", tmp_path / "work", "--output", output, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(output.read_text())
    names = ["opencv-fsrcnn", "opencv-espcn", "test.py-fsrcnn", "test.py-srcnn"]
    for mode, inputs in (("image", 1), ("folder", 2)):
        results = report["results"][mode]
        assert list(results) == names and list(report["commands"][mode]) == names
        baseline = results["opencv-fsrcnn"]["median_wall_s"]
        for name, runs in results.items():
            assert len(runs["wall_s"]) == (3 if name == "opencv-fsrcnn" else 1)  # before each of the other three
            assert min(runs["wall_s"]) > 0 and runs["warmup_wall_s"] > 0 and min(runs["peak_rss_mib"]) > 0
            assert runs["median_wall_s"] == statistics.median(runs["wall_s"])
            assert runs["ratio_to_baseline"] == pytest.approx(runs["median_wall_s"] / baseline)
            assert runs["images_per_s"] == pytest.approx(inputs / runs["median_wall_s"])
            assert runs["max_peak_rss_mib"] == max(runs["peak_rss_mib"])
    assert "test.py" in report["commands"]["folder"]["test.py-srcnn"] and report["machine"]["cores"] >= 1
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "command" not in line]
    assert len(rows) == 4 and rows[0].split(" | ")[2] == "1.00x"


def test_end_to_end_errors_are_one_line_naming_the_command(peers, tmp_path):
    missing = run_module("benchmarks.end_to_end", "--peers", tmp_path, "--output", tmp_path / "e.json")
    assert_clean_error(missing, "FSRCNN_x3.pb")
    failed = run_module("benchmarks.end_to_end", "--pairs", 1, "--folder-pairs", 0, "--size", "96x54", "--peers", peers,
                        "--test-args=--tile -1", "--output", tmp_path / "e.json", timeout=120)
    assert_clean_error(failed, "test.py-fsrcnn exited with 2", "--tile")
    assert not (tmp_path / "e.json").exists()


def test_png_settings_times_every_encoder_and_rle_beats_plain_level_1_on_size():
    out = run_module("benchmarks.png_settings", "--size", "320x180", "--repeats", 1)
    assert out.returncode == 0, out.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.stdout.splitlines()
            if line.startswith(("| Pillow", "| OpenCV"))}
    assert len(rows) == 5 and rows["Pillow, level 6 (its default)"][3].startswith("1.00x")
    assert float(rows["Pillow, level 1, RLE"][2]) < float(rows["Pillow, level 1"][2])
    opencv = rows["OpenCV, level 1, RLE, Sub filter (its defaults; test.py)"]
    assert float(opencv[1]) > 0 and float(opencv[2]) < 1.5 * float(rows["Pillow, level 6 (its default)"][2])
