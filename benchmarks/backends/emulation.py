"""Emulation side of ``moc-envs bench backends``: N raw games on each emulator
(:mod:`moc_envs.envs.emulators`), their parity, and the learned env end to end on each
emulator and runtime, in turns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["emulation_speed", "emulation_parity", "env_in_turns"]

def _emulators(name: str, game: Any, n: int, seeds: list[int], **ale: Any) -> Any:
    from moc_envs.envs.emulators import make_emulators

    emu = make_emulators(name, game, n, ale)  # type: ignore[arg-type]
    emu.reset(list(range(n)), list(seeds), None)
    return emu


def emulation_speed(game: str, sizes: Sequence[int], steps: int, seed: int = 0) -> list[dict[str, Any]]:
    """Env steps/s (frames read) of ``emulator="python"`` and ``"ale-vector"``, alternating blocks."""
    from moc_envs.games import get_game

    spec = get_game(game)
    rows = []
    for n in sizes:
        emus = {name: _emulators(name, spec, n, [seed + i for i in range(n)]) for name in ("python", "ale-vector")}
        resets = {name: np.zeros(n, dtype=bool) for name in emus}
        seconds = dict.fromkeys(emus, 0.0)
        actions = np.random.default_rng(seed).integers(0, emus["python"].single_action_space.n, (steps, n))
        block = 25
        for lo in range(0, steps, block):
            for name, emu in emus.items():
                t0 = time.perf_counter()
                for a in actions[lo : lo + block]:
                    _, term, trunc, _ = emu.step(a, resets[name])
                    emu.frames(list(range(n)))
                    resets[name] = term | trunc
                seconds[name] += time.perf_counter() - t0
        for emu in emus.values():
            emu.close()
        for name in emus:
            rows.append({"game": game, "num_envs": n, "emulator": name, "steps_per_s": steps * n / seconds[name],
                         "ratio_to_python": seconds["python"] / seconds[name]})  # fmt: skip
    return rows


def _small_seeds(count: int, small: bool) -> list[int]:
    out, s = [], 0
    while len(out) < count:
        if (int(np.random.SeedSequence(s).generate_state(2)[1]) < 2**31) == small:
            out.append(s)
        s += 1
    return out


def emulation_parity(game: str, steps: int, n: int = 4) -> list[dict[str, Any]]:
    """Steps whose frame / reward, flags, lives differ between the two emulators, per setting."""
    from moc_envs.games import get_game

    spec = get_game(game)
    rows = []
    for sticky in (0.0, 0.25):
        for small in (True, False):
            seeds = _small_seeds(n, small)
            emus = [_emulators(name, spec, n, seeds, repeat_action_probability=sticky) for name in ("python", "ale-vector")]
            actions = np.random.default_rng(0).integers(0, emus[0].single_action_space.n, (steps, n))
            resets = np.zeros(n, dtype=bool)
            ends = frames_at_ends = frames_elsewhere = other = 0
            first: int | None = None
            for t, a in enumerate(actions):
                out = [emu.step(a, resets) for emu in emus]
                (r0, te0, tr0, i0), (r1, te1, tr1, i1) = out
                ended = te0 | tr0
                same_frame = [np.array_equal(x, y) for x, y in zip(emus[0].frames(list(range(n))), emus[1].frames(list(range(n))), strict=True)]
                for i in range(n):
                    flags_differ = r0[i] != r1[i] or te0[i] != te1[i] or tr0[i] != tr1[i] or i0[i]["lives"] != i1[i]["lives"]
                    other += flags_differ
                    if ended[i]:
                        ends += 1
                        frames_at_ends += not same_frame[i]
                    elif not same_frame[i]:
                        frames_elsewhere += 1
                        first = t if first is None else first
                resets = ended
            for emu in emus:
                emu.close()
            rows.append({
                "game": game, "repeat_action_probability": sticky,
                "seeds": f"ALE word {'<' if small else '>='} 2**31", "env_steps": steps * n, "episode_ends": ends,
                "end_frames_differing": frames_at_ends, "other_frames_differing": frames_elsewhere,
                "reward_flag_lives_differing": other, "first_other_frame_step": first,
            })  # fmt: skip
    return rows


def env_in_turns(
    game: str, num_envs: int = 8, rounds: int = 20, calls: int = 16, seed: int = 0,
    emulators: Sequence[str] = ("python", "ale-vector"), runtimes: Sequence[str] = ("torchscript", "onnxruntime"),
) -> list[dict[str, Any]]:
    """End to end, in turns: raw ALE (1 env, and ``num_envs`` on each emulator) and the learned
    env (1 env per runtime, ``make_vec(num_envs)`` per emulator and runtime), CPU, all built
    first, then ``rounds`` rounds of ``calls`` steps of each (order rotating), so that a change
    of load on a shared machine hits every row alike; ratios are to the raw rows of the same run."""
    import ale_py
    import gymnasium as gym

    import moc_envs
    from moc_envs.envs.emulators import make_emulators

    gym.register_envs(ale_py)
    spec = moc_envs.get_game(game)
    rng = np.random.default_rng(seed)
    steppers: dict[str, tuple[Callable[[], None], int]] = {}
    closers: list[Callable[[], None]] = []

    def single(env: Any) -> Callable[[], None]:
        env.reset(seed=seed)
        n_act = env.action_space.n

        def step() -> None:
            _, _, term, trunc, _ = env.step(int(rng.integers(n_act)))
            if term or trunc:
                env.reset()

        closers.append(env.close)
        return step

    def vector(envs: Any) -> Callable[[], None]:
        envs.reset(seed=seed)
        closers.append(envs.close)
        return lambda: envs.step(rng.integers(0, envs.single_action_space.n, envs.num_envs))

    def raw_vector(emulator: str) -> Callable[[], None]:
        emu = make_emulators(emulator, spec, num_envs, {})  # type: ignore[arg-type]
        emu.reset(list(range(num_envs)), [seed + i for i in range(num_envs)], None)
        resets = np.zeros(num_envs, dtype=bool)
        closers.append(emu.close)

        def step() -> None:
            nonlocal resets
            _, term, trunc, _ = emu.step(rng.integers(0, emu.single_action_space.n, num_envs), resets)
            emu.frames(list(range(num_envs)))
            resets = term | trunc

        return step

    try:
        steppers[f"raw {spec.ale_id}"] = (single(gym.make(spec.ale_id, disable_env_checker=True)), 1)
        for e in emulators:
            steppers[f"raw {spec.ale_id}, emulator={e}"] = (raw_vector(e), num_envs)
        for rt in runtimes:
            env = gym.make(f"MOC/{spec.name}-v0", device="cpu", runtime=rt, disable_env_checker=True)
            steppers[f"MOC/{spec.name}-v0 learned, runtime={rt}"] = (single(env), 1)
        for e in emulators:
            for rt in runtimes:
                envs = moc_envs.make_vec(f"MOC/{spec.name}-v0", num_envs, device="cpu", emulator=e, runtime=rt)
                steppers[f"MOC/{spec.name}-v0 learned, make_vec, emulator={e}, runtime={rt}"] = (vector(envs), num_envs)
        names = list(steppers)
        seconds = dict.fromkeys(names, 0.0)
        for name in names:  # warm-up
            for _ in range(3):
                steppers[name][0]()
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                step = steppers[name][0]
                t0 = time.perf_counter()
                for _ in range(calls):
                    step()
                seconds[name] += time.perf_counter() - t0
    finally:
        for close in closers:
            close()
    sps = {name: rounds * calls * steppers[name][1] / seconds[name] for name in names}
    raw1 = sps[f"raw {spec.ale_id}"]
    raw_n = max(sps[f"raw {spec.ale_id}, emulator={e}"] for e in emulators)
    return [
        {"game": spec.name, "configuration": name, "num_envs": steppers[name][1], "steps_per_s": sps[name],
         "ratio_to_ale": sps[name] / raw1, "ratio_to_raw_vector": sps[name] / raw_n if steppers[name][1] > 1 else None}
        for name in names
    ]  # fmt: skip


