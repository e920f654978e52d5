"""Benchmarks: metric helpers, and each script end to end with --quick budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import agents, detection, probe, speed
from benchmarks.__main__ import main as run_all
from benchmarks.common import markdown_table
from benchmarks.probe import entropy, label_accuracy, split_episodes, thermometer_positions


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """Point moc_envs at an empty weights folder: learned rows must say so."""
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(empty))
    # MOC_ENVS_WEIGHTS roots fall through to the bundled weights: hide those too.
    monkeypatch.setattr("moc_envs.weights.search.weights_root", lambda: empty)
    return empty


def test_probe_helpers() -> None:
    episode = np.repeat(np.arange(10), 5)
    train, val, test = split_episodes(episode, seed=0)
    assert not (train & test).any() and not (train & val).any() and not (val & test).any()
    assert (train | val | test).all()
    assert len(np.unique(episode[train])) == 7 and len(np.unique(episode[test])) == 2
    with pytest.raises(ValueError, match="need at least 3"):
        split_episodes(np.zeros(4, int), 0)
    assert entropy(np.zeros(10)) == 0.0
    assert entropy(np.arange(4)) == pytest.approx(np.log(4))
    truth = np.array([[10], [20], [30], [40]])
    acc = label_accuracy({"a": np.array([10.0, 21.0, np.nan, 45.0])}, truth, ["a"])["a"]
    assert acc["coverage"] == 0.75 and acc["exact"] == pytest.approx(1 / 3)
    assert acc["within_2"] == pytest.approx(2 / 3) and acc["mae"] == pytest.approx(2.0)
    assert acc["median_error"] == 1.0  # errors 0, +1, +5: the estimate sits above the RAM
    # Two slots: a present object at (10, 20) px, an empty slot.
    obs = np.zeros((1, 2 * 7), np.float32)
    obs[0, :3] = (1.0, 10 / 160, 20 / 210)
    code = thermometer_positions(obs, 2).reshape(2, 371)
    assert code[1].sum() == 0 and code[0, 0] == 1
    assert code[0, 1 : 1 + 160].tolist() == [1.0] * 10 + [0.0] * 150  # x = 10 > t for t = 0..9
    assert code[0, 161:].tolist() == [1.0] * 20 + [0.0] * 190


def test_markdown_table_formats_cells() -> None:
    text = markdown_table(["a", "b"], [[1234, 0.5], [None, "x"]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1,234 | 0.500 |", "| - | x |"]


def _read(out, name):
    data = json.loads((out / f"{name}.json").read_text())
    md = (out / f"{name}.md").read_text()
    return data, md


def test_speed_quick_writes_rows_and_ratios(no_weights, tmp_path) -> None:
    # Through the runner of all benchmarks, which times what it runs.
    summary = run_all(["--quick", "--only", "speed", "--out", str(tmp_path)])
    assert set(summary["seconds"]) == {"speed"} and summary["total_seconds"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["seconds"]["speed"] > 0
    with pytest.raises(SystemExit):
        run_all(["--only", "speed,sped"])
    data, md = _read(tmp_path, "speed")
    rows = {(r["name"], r["num_envs"]): r for r in data["rows"]}
    start, end = rows[("raw ALE/Pong-v5", 1)], rows[("raw ALE/Pong-v5, again at the end", 1)]
    # Every ratio is to the mean of the two raw-ALE measurements.
    assert start["ratio_to_ale"] + end["ratio_to_ale"] == pytest.approx(2.0)
    assert rows[("MOC/Pong-v0 detector=ram, make_vec", 8)]["steps_per_s"] > 0
    assert rows[("OCAtari vision mode", 1)]["steps_per_s"] > 0
    learned = rows[("MOC/Pong-v0 learned", 1)]
    assert learned["steps_per_s"] is None and learned["note"] == "not available: no weights for Pong"
    assert "not available: no weights for Pong" in md
    assert (tmp_path / "speed.png").stat().st_size > 0


def test_detection_quick_scores_vision_and_says_what_is_missing(no_weights, tmp_path) -> None:
    detection.main(["--quick", "--games", "Pong", "--out", str(tmp_path)])
    data, md = _read(tmp_path, "detection")
    (row,) = data["results"]
    assert row["game"] == "Pong" and row["frames"] == 3 * 32
    assert 0.9 <= row[detection.VISION]["f1"] <= 1.0  # OCAtari's Pong rules are near perfect
    assert detection.LEARNED not in row and row["note"] == "not available: no weights for Pong"
    assert set(row[detection.VISION]["per_category"]) == {"Player", "Enemy", "Ball"}
    assert "not available: no weights for Pong" in md and "held seed 1001" in md
    assert (tmp_path / "detection.png").is_file()


def test_detection_update_keeps_other_games_rows_and_refuses_other_settings(no_weights, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        detection.main(["--quick", "--games", "Pong", "--update", "--out", str(tmp_path)])
    assert "needs an earlier" in capsys.readouterr().err
    detection.main(["--quick", "--games", "Pong", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "detection.json").read_text())
    kept = dict(data["results"][0], game="Boxing")  # stands for a game scored in an earlier run
    data["results"].append(kept)
    (tmp_path / "detection.json").write_text(json.dumps(data))
    detection.main(["--quick", "--games", "Pong", "--update", "--out", str(tmp_path)])
    again, md = _read(tmp_path, "detection")
    assert [r["game"] for r in again["results"]] == ["Boxing", "Pong"]  # the games' order, not the run's
    assert again["results"][0] == kept and "| Boxing |" in md
    with pytest.raises(SystemExit):
        detection.main(["--games", "Pong", "--frames", "64", "--update", "--out", str(tmp_path)])
    assert "rerun every game" in capsys.readouterr().err


def test_label_code_holds_given_flag_thermometer_and_bits() -> None:
    from benchmarks.probe import label_code

    labels = {"a": np.array([0, 5, 200]), "_a": np.array([True, True, False]), "b": np.array([3, 3, 3]), "_b": np.array([False, False, False])}
    code = label_code(labels, ["a", "b", "c"], 3).reshape(3, 3, 264)
    assert code.shape == (3, 3, 264)
    assert code[:, 0, 0].tolist() == [1, 1, 0] and not code[:, 1:].any()  # b never given, c absent
    assert code[0, 0, 1:256].sum() == 0 and code[1, 0, 1:256].sum() == 5  # 5 > t for t = 0..4
    assert code[1, 0, 256:].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]  # 5 = 0b101
    assert not code[2].any()  # not given: all zero whatever the value


def test_probe_leaves_out_features_constant_in_training() -> None:
    """A constant column can only act as a bias: the probe skips it, so a representation with
    constant columns gets exactly the probe of the same representation without them."""
    from benchmarks.probe import probe_all

    rng = np.random.default_rng(0)
    n = 200
    label = rng.integers(0, 4, n)
    x = np.zeros((n, 6), np.float32)
    x[np.arange(n), label] = 1.0  # one-hot of the label in columns 0-3
    x[:, 5] = 7.0  # columns 4 and 5 never change
    data = {
        "episode": np.repeat(np.arange(20), n // 20), "rams": [bytes([i % 256, i // 256]) for i in range(n)],
        "label_names": ["pos"], "kinds": ["agent"], "labels": label[:, None],
        "features": {"with constants": x, "without": x[:, :4].copy()},
    }  # fmt: skip
    reps = probe_all(data, epochs=3, seed=0)["representations"]
    assert (reps["with constants"]["dim"], reps["with constants"]["dim_varying"]) == (6, 4)
    assert reps["with constants"]["labels"] == reps["without"]["labels"]


def test_probe_quick_runs_the_protocol(no_weights, tmp_path) -> None:
    probe.main(["--quick", "--out", str(tmp_path)])
    data, md = _read(tmp_path, "probe")
    p = data["probe"]
    assert set(p["dropped_low_entropy"]) >= {"player_x", "enemy_x"}
    rep = p["representations"]["objects (ram)"]
    assert set(rep["labels"]) == {"ball_x", "ball_y", "player_y", "enemy_y"}
    assert 0.0 <= rep["overall"] <= 1.0
    assert data["label_accuracy"]["ram"]["player_y"]["within_2"] >= 0.9
    assert "not available: no weights for Pong" in md and "ST-DIM" in md


def test_agents_quick_trains_both_available_agents(no_weights, tmp_path) -> None:
    agents.main(["--quick", "--out", str(tmp_path)])
    data, md = _read(tmp_path, "agents")
    runs = data["runs"]
    assert runs["objects (learned), MlpPolicy"]["note"] == "not available: no weights for Pong"
    for label in ("objects (ram oracle), MlpPolicy", "pixels, CnnPolicy"):
        assert runs[label]["steps"] >= 256
        assert len(runs[label]["rollout_reward_per_step"]) >= 1
    assert (tmp_path / "agents.png").is_file()


def test_agents_verdict_reads_first_and_last_quarter() -> None:
    run = {"first_quarter_return": -20.5, "last_quarter_return": -18.0,
           "first_quarter_episode_length": 900.0, "last_quarter_episode_length": 950.0}
    assert agents.verdict(run).startswith("learning: return +2.5")
    assert agents.verdict({**run, "last_quarter_return": -20.0}).startswith("no clear learning")
    assert agents.verdict({**run, "last_quarter_return": -20.0, "last_quarter_episode_length": 1200.0}).startswith(
        "learning: return +0.5, episodes +33% longer"
    )
    assert agents.verdict({**run, "first_quarter_return": None}) == "too few episodes to judge"


@pytest.fixture
def untrained_weights(monkeypatch, tmp_path):
    """A randomly initialised Pong detector in a temporary weights folder.

    Only the learned rows' plumbing is under test here (they must run and be
    scored, not skipped); the numbers of an untrained detector mean nothing and
    are never written to benchmarks/results/.
    """
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from moc_envs.model.config import ModelConfig
    from moc_envs.model.encoder import SpaceEncoder
    from moc_envs.perception.space_detector import CONFIG_FILE, FORMAT, WEIGHTS_FILE
    from moc_envs.weights.manifest import write_manifest

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = ModelConfig()
    folder = tmp_path / "weights" / "Pong"
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in SpaceEncoder(cfg).state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT, "game": "Pong"})
    (folder / CONFIG_FILE).write_text(
        json.dumps({"format": FORMAT, "game": "Pong", "model": cfg.to_dict()})
    )
    write_manifest(folder, "Pong")
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(folder.parent))
    return folder


def test_learned_rows_run_when_weights_exist(untrained_weights, tmp_path) -> None:
    out = tmp_path / "out"
    data = speed.run("Pong", steps=8, learned_steps=4, vec_sizes=(2,), warmup=1, device="cpu", out=out,
                     detect_batches=(1, 4), detect_repeats=2)  # fmt: skip
    learned = [r for r in data["rows"] if "learned" in r["name"]]
    assert learned and all(r["steps_per_s"] and not r["note"] for r in learned)
    assert [(r["batch"], r["detector"]) for r in data["detect"]] == [
        (b, f"space encoder, shipped{s}") for b in (1, 4) for s in ("", ", eager")
    ]
    # One folder: it is its own baseline, frozen against frozen and eager against eager.
    assert all(r["ms_per_frame"] > 0 and r["speedup_vs_baseline"] == 1.0 for r in data["detect"])
    eager = [r for r in data["detect"] if r["detector"].endswith("eager")]
    assert all(r["speedup_vs_filed"] == 1.0 for r in eager)
    data = detection.run(["Pong"], frames=6, device="cpu", out=out)
    (row,) = data["results"]
    # No classifier: every box is "object", which fills no slot, so nothing is found or claimed.
    assert row[detection.LEARNED]["recall"] == 0.0 and row[detection.LEARNED]["fp"] == 0
    assert (out / "detection_worst" / "pong.png").stat().st_size > 0
    data = probe.run("Pong", steps=24, epochs=1, num_envs=4, device="cpu", out=out)
    reps = data["probe"]["representations"]
    assert {"objects (learned)", "objects (learned), thermometer positions", "z_what (learned)"} <= set(reps)
    assert reps["objects (learned), thermometer positions"]["dim"] == 3 * (1 + 160 + 210)
    assert reps["z_what (learned)"]["dim"] == 3 * (4 + 32)
    assert "learned" in data["label_accuracy"]
    # No category classifier in the folder: every box is "object" and fills no slot.
    assert "fills no observation slot" in data["learned_objects_note"]


class _RaisingVisionEnv:
    """OCAtari-shaped env whose detection raises on every third step, after the emulator stepped."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        import gymnasium as gym

        self.action_space = gym.spaces.Discrete(3)
        self.t = 0
        self.resets = 0
        ale = SimpleNamespace(game_over=lambda: self.t % 10 == 0)
        self._env = SimpleNamespace(unwrapped=SimpleNamespace(ale=ale))

    def reset(self, **_: object) -> tuple[np.ndarray, dict]:
        self.resets += 1
        return np.zeros(1), {}

    def step(self, action: int) -> tuple:
        self.t += 1
        if self.t % 3 == 0:
            raise ValueError("more objects than its list holds")
        return np.zeros(1), 0.0, False, self.t % 10 == 0, {}

    def close(self) -> None:
        pass


def test_time_single_counts_ocatari_steps_that_raise() -> None:
    env = _RaisingVisionEnv()
    steps, seconds, raised = speed.time_single(lambda: env, steps=30, warmup=0, seed=0, ocatari=True)
    assert (steps, raised) == (30, 10)
    assert seconds > 0
    # Episode ends are still seen on a step that raised (t = 30) and on one that did not (10, 20).
    assert env.resets == 1 + 3
    with pytest.raises(ValueError, match="list holds"):
        speed.time_single(_RaisingVisionEnv, steps=30, warmup=0, seed=0)


def test_games_table_gathers_every_committed_result(tmp_path) -> None:
    from benchmarks import games
    from benchmarks.common import RESULTS_DIR

    table = games.run(RESULTS_DIR, tmp_path)
    assert {"Pong", "Boxing", "Skiing", "Freeway", "Breakout", "SpaceInvaders", "MsPacman", "Seaquest"} <= set(table)
    pong = table["Pong"]
    assert {"speed", "detection", "probe"} <= set(pong)
    assert 0 < pong["speed"]["learned_1_env"] < 1 and pong["detection"]["objects_per_frame"] > 0
    speed = json.loads((RESULTS_DIR / "speed.json").read_text())
    assert pong["speed"]["raw_ale_steps_per_s"] == speed["rows"][0]["steps_per_s"]
    md = (tmp_path / "games.md").read_text()
    assert md.count("\n| ") >= len(table) + 1 and (tmp_path / "games.png").stat().st_size > 0


def test_games_table_refuses_a_folder_without_results(tmp_path, capsys) -> None:
    from benchmarks import games

    with pytest.raises(SystemExit) as exc:
        games.main(["--results", str(tmp_path), "--out", str(tmp_path)])
    assert exc.value.code == 2 and "no speed.json, detection.json or probe.json" in capsys.readouterr().err
    (tmp_path / "speed.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        games.gather(tmp_path)


def test_games_table_keeps_the_newer_run_of_a_game(tmp_path) -> None:
    """The top-level detection table and a game's own can both hold a game: the newer run wins,
    wherever its file sorts."""
    from benchmarks import games

    def detection(f1: float, date: str) -> str:
        row = {"game": "Pong", "frames": 10, games.LEARNED: {"f1": f1, "spurious_singleton_share": 0.0},
               games.VISION: {"f1": 1.0, "truth_objects": 30}}
        return json.dumps({"results": [row], "machine": {"date": date}})

    (tmp_path / "zz").mkdir()
    (tmp_path / "detection.json").write_text(detection(0.9, "2026-12-02T10:00:00+00:00"))
    (tmp_path / "zz" / "detection.json").write_text(detection(0.5, "2026-12-01T10:00:00+00:00"))
    assert games.gather(tmp_path)["Pong"]["detection"]["learned"] == 0.9
    (tmp_path / "zz" / "detection.json").write_text(detection(0.7, "2026-12-03T10:00:00+00:00"))
    assert games.gather(tmp_path)["Pong"]["detection"]["learned"] == 0.7


def test_games_table_merges_a_probe_of_some_representations_into_the_older_run(tmp_path) -> None:
    """A newer probe of the full representation only (--representations) replaces that row and
    keeps the older run's other rows; the per-category table names the newer run's samples."""
    from benchmarks import games

    def probe(reps: dict, steps: int, date: str) -> str:
        return json.dumps({"game": "Boxing", "steps": steps, "published": {"ST-DIM": 0.58},
                           "probe": {"representations": reps}, "machine": {"date": date}})  # fmt: skip

    old = {games.CODE: {"overall": 0.3}, games.FULL: {"overall": 0.5, "categories": {"A": 0.5}}}
    (tmp_path / "boxing").mkdir()
    (tmp_path / "boxing" / "probe.json").write_text(probe(old, 5000, "2026-12-01T10:00:00+00:00"))
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "probe.json").write_text(
        probe({games.FULL: {"overall": 0.8, "categories": {"A": 0.8}}}, 20000, "2026-12-02T10:00:00+00:00")
    )
    row = games.gather(tmp_path)["Boxing"]["probe"]
    assert (row["learned"], row["full"], row["full_steps"], row["full_categories"]) == (0.3, 0.8, 20000, {"A": 0.8})
    assert "| Boxing | 20,000 | 0.800 |" in games.probe_categories({"Boxing": {"probe": row}})


def test_backends_compares_runtimes_and_emulators(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from benchmarks import backends

    data = backends.run(["Pong"], batches=(1, 2), repeats=2, emulation_steps=10, parity_steps=30, out=tmp_path,
                        backends=("eager", "torchscript", "onnxruntime"), turns=(1, 2))  # fmt: skip
    rows = {(r["part"], r["batch"], r["backend"]): r for r in data["inference"]}
    for batch in (1, 2):
        shipped = rows[("image encoder", batch, "torchscript")]
        assert shipped["shipped"] and shipped["speedup_vs_shipped"] == 1.0
        fast = rows[("image encoder", batch, "onnxruntime")]
        assert fast["ms_per_call"] > 0 and fast["speedup_vs_shipped"] > 0 and fast["max_abs_diff"] < 1e-4
    assert ("image encoder", 1, "openvino") not in rows  # not asked for
    assert {(r["num_envs"], r["emulator"]) for r in data["emulation_speed"]} == {
        (n, e) for n in (1, 8) for e in ("python", "ale-vector")
    }
    no_sticky = [r for r in data["emulation_parity"] if r["repeat_action_probability"] == 0.0]
    assert len(no_sticky) == 2 and all(
        r["other_frames_differing"] == 0 and r["reward_flag_lives_differing"] == 0 for r in no_sticky
    )
    turns = {r["configuration"]: r for r in data["env_in_turns"]}
    assert len(turns) == 9 and turns["raw ALE/Pong-v5"]["ratio_to_ale"] == 1.0
    assert all(r["steps_per_s"] > 0 for r in turns.values())
    assert "CPU: " in (tmp_path / "backends.md").read_text()
    assert json.loads((tmp_path / "backends.json").read_text())["cpu"] == data["cpu"]
    assert (tmp_path / "backends.png").stat().st_size > 0
