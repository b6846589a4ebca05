"""`bench/gpu.py --smoke`: the GPU benchmark's own code, run on the CPU so it never rots.

Smoke mode builds the same pipeline from configs (tiny sizes, random weights), times
the plain diffusers call and the backend's rows, and prints the same table; the GPU-only
rows say why they were skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(330)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-smoke")
    out = tmp / "rows.json"
    env = dict(os.environ, QEC_TINY_MODEL_DIR=str(tmp / "tiny-model"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "bench/gpu.py", "--smoke", "--json", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout, json.loads(out.read_text())


def test_it_prints_the_table_with_the_baseline_full_and_variation_rows(smoke):
    stdout, _ = smoke
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("row "))
    for column in ("pics", "steps", "s/step", "total s", "peak GiB", "x floor", "max|diff|"):
        assert column in header
    for name in ("diffusers plain ", "full ", "variation ", "variation ref (plain) ", "full x2 "):
        assert any(line.startswith(name) and "skipped" not in line for line in lines), name
    assert "FLOP per transformer pass" in stdout


def test_every_row_has_a_time_and_a_floor(smoke):
    _, data = smoke
    assert data["smoke"] is True and data["errors"] == []
    rows = {r["name"]: r for r in data["rows"]}
    assert {"diffusers plain", "full", "variation", "variation ref (plain)", "diffusers plain x2",
            "full x2"} <= set(rows)
    for row in rows.values():
        assert row["seconds"] > 0 and row["per_step"] > 0 and row["total"] > 0, row["name"]
        assert row["flop_per_pass"] > 0 and row["floor_ratio"] > 0, row["name"]
        assert row["pixel_std"] > 1, row["name"]  # a real picture, not a blank one


def test_the_backend_and_reused_encodings_give_the_plain_calls_pixels(smoke):
    _, data = smoke
    rows = {r["name"]: r for r in data["rows"]}
    # The variation reuses the prompt and picture encodings of the full row's request.
    assert rows["variation"]["ref"] == "variation ref (plain)"
    assert rows["variation"]["expect_identical"] and rows["variation"]["max_diff"] == 0
    for name, ref in (("full", "diffusers plain"), ("full x2", "diffusers plain x2")):
        assert rows[name]["ref"] == ref
        assert rows[name]["expect_identical"] and rows[name]["max_diff"] == 0, name


def test_gpu_only_rows_say_why_and_goals_are_not_judged(smoke):
    stdout, data = smoke
    skipped = {s["name"]: s["reason"] for s in data["skipped"]}
    for name in ("fp8", "model-offload", "group-offload"):
        assert "CUDA" in skipped[name], name
    assert [g["result"] for g in data["goals"]] == ["n/a (smoke)"] * 4
    assert stdout.count("n/a (smoke)") == 4
