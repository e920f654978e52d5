"""Training runs that cannot mix, corrupt or mislead: the --out lock, stale temporaries,
checkpoint digests, thread-count changes on resume, and --help defaults."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from moc_envs.errors import CorruptWeightsError
from moc_envs.weights.atomic import temporary_path
from trainers import run_lock
from trainers.data.reader import DatasetError
from trainers.detector.train import CHECKPOINT, TrainWarning, load_checkpoint, main
from trainers.run_lock import LOCK_FILE, RunLock, RunLockedError, RunLockWarning


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--game", "Pong", "--data", str(data), "--out", str(out), "--preset", "cpu",
        "--batch-stacks", "1", "--device", "cpu", "--no-progress", "--eval-split", "",
        "--steps", "2", *extra,
    ]  # fmt: skip


# Resuming a step-1 checkpoint with --until-step 1 loads, checks and rewrites it without a step.
RESUME = ("--resume", "--until-step", "1")


@pytest.fixture(scope="module")
def trained(tiny_pong, tmp_path_factory) -> Path:
    """A run stopped after one of its two steps (checkpoint.pt at step 1)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    main(_argv(tiny_pong, run, "--until-step", "1"))
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """--threads changes a process-wide torch setting; give the next test the old one back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)




def _our_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, TrainWarning | RunLockWarning)]


# ---------------------------------------------------------------- the --out lock
def test_second_run_into_a_locked_out_refuses_naming_the_pid(tmp_path):
    out = tmp_path / "run"
    host = re.escape(socket.gethostname())
    lock = re.escape(str(out / LOCK_FILE))
    with RunLock(out):
        with pytest.raises(RunLockedError, match=rf"pid {os.getpid()} on host {host}.*{lock}.*another --out"):
            main(_argv(tmp_path / "no-data", out))
        assert (out / LOCK_FILE).is_file()
    assert not (out / LOCK_FILE).exists()


def test_lock_held_by_another_process_refuses_then_is_taken_over_after_kill_9(tiny_pong, run):
    code = (
        "import sys, time\n"
        "from trainers.run_lock import RunLock\n"
        f"RunLock({str(run)!r}).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"pid {proc.pid} on host .*{LOCK_FILE}"):
            main(_argv(tiny_pong, run, *RESUME))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    # The kernel dropped the dead process's flock; its record is still in the file.
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid
    with pytest.warns(RunLockWarning, match=rf"took over the lock .* left by pid {proc.pid} .*no longer running"):
        main(_argv(tiny_pong, run, *RESUME))
    assert not (run / LOCK_FILE).exists()
    assert torch.load(run / CHECKPOINT, weights_only=True)["step"] == 1


def test_stale_lock_of_a_dead_pid_is_taken_over_and_released_on_error(tmp_path, dead_pid):
    out = tmp_path / "run"
    out.mkdir()
    dead = dead_pid
    record = {"pid": dead, "host": socket.gethostname(), "started": "yesterday"}
    (out / LOCK_FILE).write_text(json.dumps(record))
    with pytest.warns(RunLockWarning, match=rf"left by pid {dead} on host .*started yesterday"):
        with pytest.raises(DatasetError, match="No dataset at"):
            main(_argv(tmp_path / "no-data", out))
    assert not (out / LOCK_FILE).exists()


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    record = {"pid": 12345, "host": "elsewhere.example"}
    (out / LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(RunLockedError, match=r"pid 12345 on host elsewhere\.example.*cannot tell whether "
                       r"that run is still going.*delete .*train\.lock"):  # fmt: skip
        main(_argv(tmp_path / "no-data", out))
    assert json.loads((out / LOCK_FILE).read_text()) == record  # someone else's file: left alone


def test_lock_is_released_on_keyboard_interrupt(tmp_path, monkeypatch):
    import trainers.detector.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainers.detector.train, "load_train_data", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        main(_argv(tmp_path / "no-data", out))
    assert not (out / LOCK_FILE).exists()
    RunLock(out).acquire().release()


def test_lock_without_flock_is_the_file_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "fcntl", None)
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunLockedError, match=rf"names pid {os.getpid()} .*delete .*{LOCK_FILE}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    RunLock(tmp_path).acquire().release()


# ---------------------------------------------------------------- stale temporaries
def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(
    tiny_pong, run, live_pid, dead_pid
):
    dead = dead_pid
    stale = [temporary_path(run / CHECKPOINT, dead), temporary_path(run / "eval.json", dead)]
    live = temporary_path(run / CHECKPOINT, live_pid)
    for path in (*stale, live):
        path.write_bytes(b"half-written")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        main(_argv(tiny_pong, run, *RESUME))
    notes = _our_warnings(record)
    for path in stale:
        assert not path.exists()
        assert any(f"removed {path}" in n and f"pid {dead}" in n for n in notes), notes
    assert live.read_bytes() == b"half-written"


# ---------------------------------------------------------------- checkpoint digests
def _flip_tensor_byte(path: Path) -> None:
    """Flip one bit in the middle of the checkpoint's largest tensor, in place on disk."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # torch stores tensors uncompressed
    data[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_tensor_byte_is_reported_as_corruption(tiny_pong, run):
    ckpt = run / CHECKPOINT
    _flip_tensor_byte(ckpt)
    torch.load(ckpt, weights_only=True)  # torch itself does not notice
    with pytest.raises(CorruptWeightsError, match=r"checkpoint .* is corrupted \(digest mismatch\).*"
                       r"earlier copy of the checkpoint.*fresh --out") as err:  # fmt: skip
        main(_argv(tiny_pong, run, "--resume"))
    assert "nan" not in str(err.value) and "learning rate" not in str(err.value)


def test_changed_values_saved_by_torch_are_reported_as_corruption(run):
    path = run / CHECKPOINT
    ckpt = torch.load(path, weights_only=True)
    name = next(iter(ckpt["model"]))
    # A row-major copy: the digest covers values in logical order, whatever the memory layout.
    ckpt["model"][name] = ckpt["model"][name].clone(memory_format=torch.contiguous_format)
    original = ckpt["model"][name].view(-1)[0].item()
    ckpt["model"][name].view(-1)[0] = original + 1
    torch.save(ckpt, path)
    with pytest.raises(CorruptWeightsError, match=r"corrupted \(digest mismatch\)"):
        load_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"][name].view(-1)[0] = original
    torch.save(ckpt, path)
    load_checkpoint(path)  # restored values: the digest matches again
    torch.save({**ckpt, "step": 2}, path)
    with pytest.raises(CorruptWeightsError, match=r"corrupted \(digest mismatch\)"):
        load_checkpoint(path)


def test_checkpoint_without_digest_still_loads_with_a_note(tiny_pong, run):
    path = run / CHECKPOINT
    old = torch.load(path, weights_only=True)
    for key in ("digest", "threads", "device"):  # what the previous version did not write
        del old[key]
    torch.save(old, path)
    with pytest.warns(TrainWarning, match=r"has no digest \(written by an earlier version"):
        main(_argv(tiny_pong, run, *RESUME))
    new = torch.load(path, weights_only=True)
    assert new["digest"].startswith("sha256:") and new["step"] == 1
    for k, v in old["model"].items():
        assert torch.equal(v, new["model"][k]), k
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_checkpoint(path)
    assert _our_warnings(record) == []


# ---------------------------------------------------------------- threads on resume
def test_thread_change_on_resume_is_warned_about(tiny_pong, run):
    saved = torch.load(run / CHECKPOINT, weights_only=True)["threads"]
    other = 1 if saved != 1 else 2
    with pytest.warns(TrainWarning, match=rf"with {other} torch threads, but it was written with {saved}.*"
                      rf"not be bit-identical to an uninterrupted run.*--threads {saved}"):  # fmt: skip
        main(_argv(tiny_pong, run, *RESUME, "--threads", str(other)))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        main(_argv(tiny_pong, run, *RESUME, "--threads", str(other)))  # the count it now records
    assert _our_warnings(record) == []


# ---------------------------------------------------------------- --help
def test_train_help_shows_every_default(capsys, monkeypatch, option_help):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert "(default: the preset's: cpu 1500, gpu 5000)" in text and "(default: gpu)" in text
    assert "-1.0 for Boxing, Skiing" in text
    options = option_help(text)
    assert len(options) > 15
    for flag, help_ in options.items():
        if flag not in ("-h", "--game", "--data", "--out"):
            assert "(default:" in help_, flag
