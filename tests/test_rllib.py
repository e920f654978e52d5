"""Ray RLlib (examples.rllib_ppo): MOC/Pong-v0 registered with RLlib, PPO on two env runners
with the RAM oracle for one iteration, a checkpoint that loads without running code."""

from __future__ import annotations

import dataclasses
import os
import sys

import gymnasium as gym
import numpy as np
import pytest

from examples import rllib_ppo
from examples.rllib_ppo import CHECKPOINT, _join, _parse, _split


def _args(out, *extra: str) -> rllib_ppo.Args:
    return _parse([
        "--game", "Pong", "--detector", "ram", "--out", str(out), "--iterations", "1",
        "--env-runners", "2", "--envs-per-runner", "2", "--train-batch", "128", "--minibatch", "64",
        "--epochs", "1", "--hidden", "16", "--num-cpus", "2", "--no-progress", *extra,
    ])  # fmt: skip


def test_checkpoint_skeleton_keeps_keys_tuples_and_arrays():
    state = {"opt": {"state": {0: {"step": 3.0, "exp_avg": np.arange(4.0)}}, "betas": (0.9, 0.999)},
             "w": np.ones((2, 3), np.float32), "names": ["a", None, True]}  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    skeleton = _split(state, arrays)
    back = _join(skeleton, arrays)
    assert back["opt"]["betas"] == (0.9, 0.999) and list(back["opt"]["state"]) == [0]
    np.testing.assert_array_equal(back["opt"]["state"][0]["exp_avg"], np.arange(4.0))
    assert back["w"].dtype == np.float32 and back["names"] == ["a", None, True]
    with pytest.raises(TypeError, match="cannot store a set"):
        _split({1, 2}, {})


def test_bad_arguments_exit_with_a_message(capsys):
    for argv, message in (
        (["--detector", "ocatari"], "--detector must be space or ram, got 'ocatari'"),
        (["--hidden", "64,x"], "--hidden must be positive ints separated by commas, got '64,x'"),
        (["--train-batch", "10", "--minibatch", "64"], "--train-batch \\(10\\) must be >= --minibatch \\(64\\)"),
        (["--game", "Pongg"], "Unknown game 'Pongg'"),
    ):
        with pytest.raises(SystemExit):
            _parse(argv)
        err = capsys.readouterr().err
        assert __import__("re").search(message, err), err


def test_one_ppo_iteration_on_two_runners_and_resume(tmp_path):
    # Ray comes with the `rllib` extra, which `dev` leaves out (make install-dev adds it).
    ray = pytest.importorskip("ray")

    args = _args(tmp_path / "run")
    rllib_ppo.start_ray(args)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the lambdas run in runners
    try:
        algo = rllib_ppo.build_config(args).build_algo()
        try:
            runners = algo.env_runner_group.foreach_env_runner(
                lambda r: (os.getpid(), r.env.unwrapped.num_envs, r.env.single_observation_space),
                local_env_runner=False,
            )
            # Two runner processes, each with its own batched env (own detector), both reading
            # the flat object observation that gym.make gives.
            flat = gym.make("MOC/Pong-v0", detector="ram", obs_mode="flat").observation_space
            assert len({pid for pid, _, _ in runners}) == 2 and os.getpid() not in {p for p, _, _ in runners}
            assert all(n == 2 and space == flat for _, n, space in runners)

            summary = rllib_ppo.fit(algo, args)
            assert summary["iterations"] == 1 and summary["env_steps"] == 128
            assert (tmp_path / "run" / CHECKPOINT).is_file() and any((tmp_path / "run" / "tb").iterdir())
            saved = algo.learner_group.get_weights()["default_policy"]
            algo.train()  # the weights move on past the checkpoint ...
            moved = algo.learner_group.get_weights()["default_policy"]
            assert any(not np.array_equal(saved[k], moved[k]) for k in saved)
            with pytest.raises(ValueError, match="exists; pass --resume"):
                rllib_ppo.fit(algo, args)
            with pytest.raises(ValueError, match="another run \\(--hidden: checkpoint '16' vs now '32'\\)"):
                rllib_ppo.load_state(algo, tmp_path / "run" / CHECKPOINT, dataclasses.replace(args, hidden="32"))
            # ... and --resume brings back the checkpoint's, in the learner and in every runner.
            progress = rllib_ppo.load_state(algo, tmp_path / "run" / CHECKPOINT, args)
            assert progress["iteration"] == 1 and progress["env_steps"] == 128
            loaded = algo.learner_group.get_weights()["default_policy"]
            assert all(np.array_equal(saved[k], np.asarray(loaded[k])) for k in saved)
            key = "pi.net.mlp.0.weight"
            for w in algo.env_runner_group.foreach_env_runner(
                lambda r: r.module.get_state()[key], local_env_runner=False
            ):
                np.testing.assert_array_equal(np.asarray(w), saved[key])
            resumed = rllib_ppo.fit(algo, dataclasses.replace(args, iterations=2, resume=True))
            assert resumed["iterations"] == 2 and resumed["env_steps"] == 256
        finally:
            algo.stop()
    finally:
        ray.shutdown()


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "--env-runners" in text and "(default: 2)" in text
