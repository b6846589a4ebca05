"""`bench/gpu.py --smoke`: the GPU benchmark's code runs on the CPU, so it never rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def test_the_gpu_benchmark_runs_in_smoke_mode(tmp_path):
    out = tmp_path / "rows.json"
    env = dict(os.environ, QEC_TINY_MODEL_DIR=str(tmp_path / "tiny"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "bench/gpu.py", "--smoke", "--json", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "s/step" in run.stdout and "x floor" in run.stdout
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("diffusers plain", "full (auto attention, reuse)", "full, variation (reused encodings)",
                 "full, two pictures", "model-offload", "fp8"):
        assert rows[name]["seconds"] > 0 and rows[name]["floor_ratio"] > 0, name
        assert rows[name]["extra"]["floor_s"] > 0, name
    # Same settings as the plain diffusers call: the backend's exact levers change nothing.
    assert rows["full (auto attention, reuse)"]["max_abs_diff"] == 0
    assert rows["full, same request again"]["max_abs_diff"] == 0
    assert "goals: n/a (smoke)" in run.stdout
