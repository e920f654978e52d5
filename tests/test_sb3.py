"""Stable-Baselines3 trains on a MOC env (the observation is a plain float32 Box)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env


def test_ppo_mlp_trains_2048_steps_on_pong_ram() -> None:
    torch.set_num_threads(1)
    env = gym.make("MOC/Pong-v0", detector="ram")
    sb3_check_env(env, warn=False)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    changed = any(
        not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)
    )
    assert changed, "PPO updates left every policy weight unchanged"
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(np.asarray(action)))
    env.close()
