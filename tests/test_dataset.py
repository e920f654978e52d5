"""Dataset builder and loaders on tiny Pong datasets (real ALE + OCAtari)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moc_envs.errors import MocEnvsError
from moc_envs.games import get_game
from moc_envs.perception.preprocess import MODEL_SIZE
from moc_envs.weights.atomic import temporary_path
from trainers.data.dataset import BuildInterrupted, DatasetWarning, build_dataset, main
from trainers.data.motion import match_centres, targets_to_boxes
from trainers.data.reader import (
    DatasetError,
    DatasetFileError,
    StackDataset,
    load_ground_truth,
    load_meta,
    load_split,
)
from trainers.data.storage import BACKGROUND_FILE, gt_file, partial_dir, split_file

# Small but real: two training chunks so that resume has something to resume.
TINY = dict(game="Pong", train=8, val=2, test=2, seed=0, chunk_stacks=4, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pong") / "Pong"
    report = build_dataset(out=out, vis=True, **TINY)
    return out, report


def test_layout_shapes_and_dtypes(tiny):
    root, report = tiny
    meta = load_meta(root)
    assert meta["game"] == "Pong" and meta["image_size"] == 128
    assert meta["grid"] == 16 and meta["T"] == 4 and meta["version"] >= 1
    assert meta["policy"] == "random"
    sizes = {"train": 8, "val": 2, "test": 2}
    for split, n in sizes.items():
        assert meta["splits"][split]["stacks"] == n and meta["splits"][split]["done"]
        d = load_split(root, split)
        assert len(d) == n
        assert d.frames.shape == (n, 4, 128, 128, 3) and d.frames.dtype == np.uint8
        assert d.motion_pres.shape == (n, 4, 256) and d.motion_pres.dtype == np.float32
        assert d.motion_where.shape == (n, 4, 256, 4) and d.motion_where.dtype == np.float32
        assert d.motion_mask.shape == (n, 4, 128, 128) and d.motion_mask.dtype == np.uint8
        assert d.rams.shape == (n, 4, 128) and d.rams.dtype == np.uint8
        assert set(np.unique(d.motion_pres)) <= {0.0, 1.0}
        assert set(np.unique(d.motion_mask)) <= {0, 1}
        assert d.motion_where[d.motion_pres == 0].sum() == 0
        assert d.frames.reshape(n * 4, -1).any(axis=1).all()  # no all-black frames
        assert report["splits"][split]["frames"] == 4 * n
    assert (root / "background.png").is_file() and (root / "report.json").is_file()
    assert len(list((root / "vis").glob("*.png"))) >= 3
    assert not partial_dir(root, "train").exists()


def test_stacks_are_consecutive_steps(tiny):
    root, _ = tiny
    gt = load_ground_truth(root, "train")
    d = load_split(root, "train")
    # Pong's frame counter (RAM byte 8) advances by the frameskip (4) every step.
    steps = np.diff(d.rams[:, :, 8].astype(np.int16), axis=1) % 256
    assert (steps == 4).all()
    # Ground truth is sorted and covers every frame with the three Pong objects.
    assert (np.diff(gt.stack) >= 0).all()
    for s in range(len(d)):
        for t in range(4):
            _, cats = gt.boxes(s, t)
            assert set(cats) <= {"Player", "Enemy", "Ball"} and "Player" in cats


def test_splits_come_from_different_episodes(tiny):
    root, _ = tiny
    meta = load_meta(root)
    streams = {tuple(meta["splits"][s]["seed_stream"]) for s in ("train", "val", "test")}
    assert len(streams) == 3
    train, val = load_split(root, "train"), load_split(root, "val")
    for v in val.frames:
        assert not any(np.array_equal(v, t) for t in train.frames)


def test_ground_truth_table(tiny):
    root, _ = tiny
    gt = load_ground_truth(root, "val")
    assert gt.category.dtype.kind == "U"
    assert gt.hud.dtype == bool and gt.moved.dtype == bool
    assert gt.x.dtype == np.float32 and gt.stack.dtype == np.int32
    assert set(gt.category[gt.hud]) <= {"PlayerScore", "EnemyScore"}
    boxes, cats = gt.boxes(0, 0, include_hud=True)
    assert boxes.shape == (len(cats), 4) and "PlayerScore" in cats


def test_build_is_deterministic_and_seed_matters(tiny, tmp_path):
    root, _ = tiny
    again = build_dataset(out=tmp_path / "again", **TINY)
    assert again["splits"]["train"]["stacks"] == 8
    a, b = load_split(root, "train"), load_split(tmp_path / "again", "train")
    for key in ("frames", "motion_pres", "motion_where", "motion_mask", "rams"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    other = build_dataset(out=tmp_path / "other", **{**TINY, "seed": 1, "val": 1, "test": 1})
    assert other["splits"]["train"]["stacks"] == 8
    assert not np.array_equal(a.frames, load_split(tmp_path / "other", "train").frames)


def test_resume_after_interruption_gives_the_same_data(tiny, tmp_path):
    root, _ = tiny
    out = tmp_path / "resumed"

    def stop_after_first(split: str, chunk: int) -> None:
        if (split, chunk) == ("train", 0):
            raise BuildInterrupted("simulated interruption")

    with pytest.raises(BuildInterrupted):
        build_dataset(out=out, on_chunk=stop_after_first, **TINY)
    assert (partial_dir(out, "train") / "chunk_00000.npz").is_file()
    assert not split_file(out, "train").exists()
    with pytest.raises(DatasetError, match="not finished"):
        load_split(out, "train")

    calls: list[tuple[str, int]] = []
    build_dataset(out=out, on_chunk=lambda s, c: calls.append((s, c)), **TINY)
    assert ("train", 0) not in calls and ("train", 1) in calls  # chunk 0 was kept
    np.testing.assert_array_equal(load_split(out, "train").frames, load_split(root, "train").frames)
    a, b = load_ground_truth(out, "train"), load_ground_truth(root, "train")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.category, b.category)

    # A finished dataset is not rebuilt; --force rebuilds it.
    stamp = split_file(out, "train").stat().st_mtime_ns
    calls.clear()
    build_dataset(out=out, on_chunk=lambda s, c: calls.append((s, c)), **TINY)
    assert calls == [] and split_file(out, "train").stat().st_mtime_ns == stamp
    build_dataset(out=out, force=True, on_chunk=lambda s, c: calls.append((s, c)), **TINY)
    assert ("train", 0) in calls


def test_other_settings_need_force(tiny, tmp_path):
    out = tmp_path / "mismatch"
    build_dataset(out=out, **{**TINY, "train": 4, "val": 1, "test": 1})
    with pytest.raises(MocEnvsError, match=r"other settings \(grid: 16 -> 8\).*force"):
        build_dataset(out=out, **{**TINY, "train": 4, "val": 1, "test": 1, "grid": 8})
    report = build_dataset(out=out, force=True, **{**TINY, "train": 4, "val": 1, "test": 1, "grid": 8})
    assert report["settings"]["grid"] == 8
    assert load_split(out, "train").motion_pres.shape == (4, 4, 64)


def test_bad_arguments_have_clear_errors(tmp_path):
    with pytest.raises(MocEnvsError, match="Unknown game 'Pongg'.*Did you mean 'Pong'"):
        build_dataset("Pongg", tmp_path / "x", 1, 0, 0)
    with pytest.raises(ValueError, match="split sizes"):
        build_dataset("Pong", tmp_path / "x", 0, 0, 0)
    with pytest.raises(ValueError, match="Unknown policy 'greedy'"):
        build_dataset("Pong", tmp_path / "y", 1, 0, 0, policy="greedy", progress=False)
    with pytest.raises(DatasetError, match="meta.json is missing"):
        load_meta(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="Unknown split 'dev'"):
        load_split(tmp_path / "x", "dev")


def test_motion_targets_find_moving_pong_objects(tmp_path):
    out = tmp_path / "recall"
    report = build_dataset(out=out, **{**TINY, "train": 24, "val": 1, "test": 1, "chunk_stacks": 24})
    # Recompute recall from the stored arrays, independently of the builder's counters.
    d, gt = load_split(out, "train"), load_ground_truth(out, "train")
    hits: dict[str, list[int]] = {}
    for s in range(len(d)):
        for t in range(4):
            pred = targets_to_boxes(d.motion_pres[s, t], d.motion_where[s, t])
            idx = gt.rows(s, t)
            idx = idx[gt.moved[idx] & ~gt.hud[idx]]
            centres = np.stack([gt.x[idx] + gt.w[idx] / 2, gt.y[idx] + gt.h[idx] / 2], axis=1)
            _, matched = match_centres(pred[:, :2] + pred[:, 2:] / 2, centres, 4.0)
            for j, i in enumerate(idx):
                hits.setdefault(str(gt.category[i]), []).append(int(j in set(matched.tolist())))
    assert set(hits) == {"Ball", "Player", "Enemy"}
    for cat, h in hits.items():
        assert np.mean(h) >= 0.9, (cat, np.mean(h), len(h))
    assert report["splits"]["train"]["recall_moved"] >= 0.9


def test_tall_screen_is_cropped_to_the_frames_detectors_see(tmp_path):
    # Carnival's ALE screen has 214 rows; the dataset holds what the env's detector gets, its top
    # 210 rows (the env crops the same way), so motion targets and boxes keep OCAtari's coordinates.
    from moc_envs.perception.frames import screen_of
    from trainers.data.collect import make_env

    out = tmp_path / "carnival"
    build_dataset(out=out, **{**TINY, "game": "Carnival", "train": 2, "val": 1, "test": 1, "chunk_stacks": 2})
    assert load_split(out, "train").frames.shape == (2, 4, MODEL_SIZE, MODEL_SIZE, 3)
    assert np.asarray(Image.open(out / BACKGROUND_FILE)).shape == (210, 160, 3)
    env = make_env(get_game("Carnival"))
    env.reset(seed=0)
    assert env.unwrapped.ale.getScreenRGB().shape == (214, 160, 3)
    assert screen_of(env.unwrapped.ale).shape == (210, 160, 3)
    env.close()


def test_stack_dataset_and_loader(tiny):
    root, _ = tiny
    ds = StackDataset(root, "train")
    assert len(ds) == 8
    item = ds[3]
    assert set(item) == {"frames", "motion_pres", "motion_where", "motion_mask", "index"}
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (4, 128, 128, 3)
    assert item["motion_pres"].shape == (4, 256) and item["motion_where"].shape == (4, 256, 4)
    assert item["motion_mask"].dtype == torch.uint8 and int(item["index"]) == 3
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["frames"].shape == (4, 4, 128, 128, 3)
    with pytest.raises(IndexError, match="out of range"):
        ds[8]
    mm = load_split(root, "train", mmap=True)
    assert isinstance(mm.frames, np.memmap)
    np.testing.assert_array_equal(mm.frames, ds.data.frames)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--game", "Pongg", "--out", str(tmp_path / "x"), "--quiet"])
    assert exc.value.code == 2
    assert "Unknown game 'Pongg'" in capsys.readouterr().err


@pytest.mark.parametrize("sizes", [["--train", "0"], ["--val", "-1"], ["--test", "-2"]])
def test_cli_refuses_split_sizes_it_cannot_build(tmp_path, capsys, sizes: list[str]):
    with pytest.raises(SystemExit) as exc:
        main(["--game", "Pong", "--out", str(tmp_path / "x"), "--quiet", *sizes])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "split sizes must be --train >= 1, --val >= 0, --test >= 0 stacks" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag, split", [("game", True), ("off", False)])
def test_cli_colour_split_and_hud_regions_are_recorded(tmp_path, capsys, flag: str, split: bool):
    """Boxing splits by colour unless told off; given HUD rectangles reach meta.json."""
    out = tmp_path / flag
    args = ["--game", "Boxing", "--out", str(out), "--train", "2", "--val", "0", "--test", "0", "--chunk-stacks", "2"]
    main([*args, "--quiet", "--split-colours", flag, "--hud-regions", "0,0,160,26"])
    meta = load_meta(out)
    assert meta["build"]["split_colours"] is split and meta["hud_regions"] == [[0, 0, 160, 26]]
    assert '"recall_moved_by_category"' in capsys.readouterr().out


@pytest.mark.parametrize("text", ["0,0,160", "a,b,c,d", "0,0,0,10", ""])
def test_cli_refuses_malformed_hud_regions(tmp_path, capsys, text: str):
    with pytest.raises(SystemExit) as exc:
        main(["--game", "Pong", "--out", str(tmp_path / "x"), "--quiet", "--hud-regions", text])
    assert exc.value.code == 2
    assert "expected rectangles 'x,y,w,h;...'" in capsys.readouterr().err


# ---------------------------------------------------------------- damaged files
def _copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns(".cache", "vis"))
    return dest


def _rewrite(path: Path, **changes) -> None:
    """Re-save an .npz with some arrays replaced (None drops one)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v(arrays[k]) if callable(v) else v
    np.savez_compressed(path, **arrays)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated": (_truncate, r"train\.npz cannot be read as an \.npz archive \(truncated or damaged"),
    "not a zip": (lambda p: p.write_text("not an archive"), r"train\.npz cannot be read as an \.npz archive"),
    "missing": (lambda p: p.unlink(), r"train\.npz is missing"),
    "wrong dtype": (
        lambda p: _rewrite(p, frames=lambda a: a.astype(np.float32)),
        r"train\.npz has 'frames' of float32 \(8, 4, 128, 128, 3\), expected uint8 \(8, 4, 128, 128, 3\)",
    ),
    "wrong shape": (
        lambda p: _rewrite(p, motion_pres=lambda a: a[..., :64]),
        r"'motion_pres' of float32 \(8, 4, 64\), expected float32 \(8, 4, 256\)",
    ),
    "missing array": (lambda p: _rewrite(p, rams=None), r"train\.npz lacks the arrays \['rams'\]"),
    "inconsistent lengths": (
        lambda p: _rewrite(p, rams=lambda a: a[:-1]),
        r"inconsistent lengths \(stacks: frames 8, motion_pres 8, motion_where 8, motion_mask 8, rams 7\)",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_split_file_names_the_file_and_the_rebuild(tiny, tmp_path, case):
    damage, what = DAMAGE[case]
    root = _copy(tiny[0], tmp_path / "Pong")
    damage(split_file(root, "train"))
    rebuild = re.escape(f"rebuild with `moc-envs dataset --game Pong --out {root} --force`")
    with pytest.raises(DatasetFileError, match=f"{what}.*{rebuild}"):
        load_split(root, "train")
    with pytest.raises(DatasetFileError, match=what):
        StackDataset(root, "train")
    load_split(root, "val")  # the other splits still load


def test_damaged_ground_truth_and_meta_are_named(tiny, tmp_path):
    root = _copy(tiny[0], tmp_path / "Pong")
    _rewrite(gt_file(root, "val"), x=lambda a: a.astype(np.float64)[:-1])
    with pytest.raises(DatasetFileError, match=r"val_gt\.npz has column 'x' of float64.*--force"):
        load_ground_truth(root, "val")
    _rewrite(gt_file(root, "test"), stack=lambda a: a[::-1].copy())
    with pytest.raises(DatasetFileError, match=r"test_gt\.npz has rows that are not sorted"):
        load_ground_truth(root, "test")
    gt_file(root, "train").write_bytes(b"")
    with pytest.raises(DatasetFileError, match=r"train_gt\.npz cannot be read"):
        load_ground_truth(root, "train")
    (root / "meta.json").write_text('{"game": "Pong", "splits": ')
    with pytest.raises(DatasetFileError, match=r"meta\.json cannot be read as JSON.*--game <Game>.*--force"):
        load_split(root, "train")
    (root / "meta.json").write_text('{"game": "Pong", "splits": {}}')
    with pytest.raises(DatasetFileError, match=r"meta\.json lacks the entries \['image_size', 'grid', 'T'\].*--game Pong"):
        load_meta(root)


def test_builder_refuses_a_finished_dataset_with_a_missing_file(tiny, tmp_path):
    root = _copy(tiny[0], tmp_path / "Pong")
    gt_file(root, "val").unlink()
    with pytest.raises(DatasetFileError, match=r"val_gt\.npz is missing, though meta\.json says .*--force"):
        build_dataset(out=root, **TINY)
    (root / "background.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetFileError, match=r"background\.png cannot be read as a PNG.*--force"):
        build_dataset(out=root, **TINY)


def test_damaged_mmap_cache_is_rebuilt_from_the_split(tiny, tmp_path):
    root = _copy(tiny[0], tmp_path / "Pong")
    first = load_split(root, "train", mmap=True)
    expected = np.array(first.rams)
    del first  # unmap before damaging the file in place (a mapped file must not shrink)
    np.save(root / ".cache" / "train" / "rams.npy", np.zeros((3, 4, 128), np.uint8))
    again = load_split(root, "train", mmap=True)
    np.testing.assert_array_equal(again.rams, expected)
    assert again.rams.shape == (8, 4, 128)
    _truncate(split_file(root, "train"))  # a changed split file is read again, and checked
    with pytest.raises(DatasetFileError, match=r"train\.npz cannot be read"):
        load_split(root, "train", mmap=True)


def test_builder_removes_temporaries_of_a_killed_build(tiny, tmp_path):
    root = _copy(tiny[0], tmp_path / "Pong")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = temporary_path(split_file(root, "train"), proc.pid)
    stale.write_bytes(b"half an archive")
    with pytest.warns(DatasetWarning, match=r"removed .*\.train\.npz\.tmp\d+, a temporary file"):
        build_dataset(out=root, **TINY)
    assert not stale.exists()


def test_dataset_help_shows_every_default(capsys, monkeypatch, option_help):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--train TRAIN" in text and "(default: 4096)" in text and "(default: random)" in text
    for flag, help_ in option_help(text).items():
        if flag not in ("-h", "--game", "--out"):
            assert "(default:" in help_, flag



def test_damaged_chunk_of_an_unfinished_build_is_named(tmp_path):
    out = tmp_path / "Pong"

    def stop(split: str, chunk: int) -> None:
        raise BuildInterrupted("simulated interruption")

    with pytest.raises(BuildInterrupted):
        build_dataset(out=out, on_chunk=stop, **{**TINY, "train": 4, "val": 1, "test": 1})
    chunk = partial_dir(out, "train") / "chunk_00000.npz"
    _truncate(chunk)
    with pytest.raises(DatasetFileError, match=r"chunk_00000\.npz cannot be read.*--game Pong .*--force"):
        build_dataset(out=out, **{**TINY, "train": 4, "val": 1, "test": 1})
