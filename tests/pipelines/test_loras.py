"""Community LoRAs on the tiny model: tiny LoRA files made offline (random weights, the
real key names), loaded once, switched per job, refused when they do not fit, and
recorded with the sha256 of their file."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import BadRequest, BackendUnavailable, EditRequest, GenerateRequest, get_backend
from pipelines import loras as lora_tools
from pipelines.loras import Adapters, LoraError, LoraSpec, file_sha256, parse_loras, resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from make_tiny_lora import STYLES, keyed, lora_weights, make_tiny_lora, misfit  # noqa: E402

FAST = dict(vae_area=128 * 128, output_area=128 * 128, max_output_area=128 * 128,
            steps=2, t2i_steps=2)


@pytest.fixture(scope="module")
def transformer(tiny_model_dir):
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel.from_pretrained(str(tiny_model_dir), subfolder="transformer")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, transformer):
    folder = tmp_path_factory.mktemp("loras")
    make_tiny_lora(folder / "ink.safetensors", transformer, seed=1)
    make_tiny_lora(folder / "rain.safetensors", transformer, seed=2, rank=3, style="comfy", alpha=1.5)
    misfit(folder / "wide.safetensors", transformer, "shapes")
    misfit(folder / "flux.safetensors", transformer, "keys")
    return folder


def specs(folder, *names, **extra):
    return [{"name": n, "source": str(folder / f"{n}.safetensors"), **extra.get(n, {})} for n in names]


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    backend = get_backend("tiny", **FAST)
    backend.load()
    return backend


@pytest.fixture(scope="module")
def with_loras(tiny_model_dir, lora_dir):
    backend = get_backend("tiny", loras=specs(lora_dir, "ink", "rain", "wide", "flux"), **FAST)
    backend.load()
    return backend


@pytest.fixture(scope="module")
def picture(make_picture):
    return make_picture(96, 64, seed=3)


def edit(backend, picture, **options):
    return backend.edit(EditRequest("make it night", images=(picture,), seed=5, **options))


def pixels(result):
    return np.asarray(result.image)


def same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def adapter_state(transformer):
    """What must not grow: adapter names, LoRA layers, parameter count and bytes."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    params = list(transformer.parameters())
    layers = [m for m in transformer.modules() if isinstance(m, BaseTunerLayer)]
    return (sorted(getattr(transformer, "peft_config", {}) or {}),
            len(layers), sum(len(m.lora_A) for m in layers),
            len(params), sum(p.numel() * p.element_size() for p in params))


# ----- the setting ------------------------------------------------------------------


def test_the_setting_parses_with_defaults_and_names_what_is_wrong():
    [ink, repo] = parse_loras([{"name": "ink", "source": "/l/ink.safetensors", "scale": 0.8},
                               {"source": "owner/Some.Repo", "target": "t2i"}])
    assert ink == LoraSpec("ink", "/l/ink.safetensors", None, 0.8, "edit")
    assert (repo.name, repo.scale, repo.target) == ("Some-Repo", 1.0, "t2i")
    assert parse_loras(None) == [] and parse_loras([ink]) == [ink]
    for bad, words in [
        ({"name": "x"}, "needs a source"),
        ({"source": "/a.safetensors", "nmae": "x"}, "unknown keys ['nmae']"),
        ({"name": "a.b", "source": "/a"}, "'a.b' must be"),
        ({"name": "Lightning", "source": "/a"}, "taken by the Lightning LoRA"),
        ({"name": "x", "source": "/a", "target": "video"}, "target must be one of edit, t2i"),
        ({"name": "x", "source": "/a", "scale": "strong"}, "scale must be a number"),
        ({"name": "x", "source": "/a", "scale": float("nan")}, "finite"),
        ("ink.safetensors", "must be an object"),
    ]:
        with pytest.raises(ValueError, match=r"loras\[0\].*" + _escape(words)):
            parse_loras([bad])
    with pytest.raises(ValueError, match=r"loras\[1\]: the name 'x' is used twice"):
        parse_loras([{"name": "x", "source": "/a"}, {"name": "x", "source": "/b"}])
    with pytest.raises(ValueError, match="must be a list"):
        parse_loras({"name": "x", "source": "/a"})


def _escape(text):
    import re

    return re.escape(text)


def test_requests_carry_a_normalised_selection(picture):
    assert EditRequest("x", images=(picture,)).loras == ()
    request = EditRequest("x", images=(picture,), loras=["ink", ("rain", 2)])
    assert request.loras == (("ink", None), ("rain", 2.0))
    assert GenerateRequest("x", loras={"ink": 0.5}).loras == (("ink", 0.5),)
    for bad, words in [(["ink", "ink"], "chosen twice"), ([("ink", float("inf"))], "finite"),
                       ([3], "by name"), (7, "list of names")]:
        with pytest.raises(BadRequest, match=words):
            GenerateRequest("x", loras=bad)


def test_the_settings_pass_loras_to_the_local_backends(monkeypatch):
    from assistant.config import Settings

    monkeypatch.setenv("QEC_LORAS", '[{"name": "ink", "source": "/l/ink.safetensors", "scale": 0.5}]')
    settings = Settings(_env_file=None)
    entry = {"name": "ink", "source": "/l/ink.safetensors", "weight_name": None, "scale": 0.5,
             "target": "edit"}
    assert settings.loras == [entry]
    assert settings.offered_loras() == ["ink"]
    assert settings.backend_settings("tiny") == {"loras": [entry]}
    assert settings.backend_settings("qwen")["loras"] == [entry]
    assert "loras" not in settings.backend_settings("remote")
    monkeypatch.setenv("QEC_LORAS", '[{"name": "a b", "source": "/l"}]')
    with pytest.raises(ValueError, match=r"loras\[0\]: the name 'a b'"):
        Settings(_env_file=None)
    monkeypatch.delenv("QEC_LORAS")
    assert Settings(_env_file=None).backend_settings("tiny") == {}


def test_a_bad_setting_stops_the_backend_with_the_reason(tiny_model_dir):
    with pytest.raises(BackendUnavailable, match=r"Bad loras setting: loras\[0\] needs a source"):
        get_backend("tiny", loras=[{"name": "x"}])


# ----- finding files and hashing them ------------------------------------------------


def test_files_and_folders_resolve(tmp_path, lora_dir):
    ink = lora_dir / "ink.safetensors"
    assert resolve(LoraSpec("ink", str(ink))) == ink
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(ink, one / "adapter.safetensors")
    (one / "README.md").write_text("an adapter")
    assert resolve(LoraSpec("one", str(one))) == one / "adapter.safetensors"
    shutil.copy(ink, one / "other.safetensors")
    with pytest.raises(LookupError, match="several .safetensors files.*set weight_name"):
        resolve(LoraSpec("one", str(one)))
    assert resolve(LoraSpec("one", str(one), weight_name="other.safetensors")).name == "other.safetensors"
    (tmp_path / "pickle.bin").write_bytes(b"x")
    with pytest.raises(LookupError, match="only .safetensors"):
        resolve(LoraSpec("p", str(tmp_path / "pickle.bin")))
    with pytest.raises(LookupError, match="not a file or folder on this machine"):
        resolve(LoraSpec("gone", str(tmp_path / "gone.safetensors")))


def fake_hub_cache(root: Path, repo: str, files: dict) -> Path:
    """The layout huggingface_hub writes: blobs by hash, a snapshot of links, refs/main."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def test_a_model_id_resolves_from_the_hub_cache_offline(tmp_path, lora_dir, monkeypatch):
    data = (lora_dir / "ink.safetensors").read_bytes()
    cache = tmp_path / "hub"
    one = fake_hub_cache(cache, "someone/ink-lora", {"ink_v1.safetensors": data})
    two = fake_hub_cache(cache, "someone/two-loras", {"a.safetensors": data,
                                                      "sub/b.safetensors": data})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = resolve(LoraSpec("ink", "someone/ink-lora"))
    # The snapshot's own name, not the blob it links to: diffusers reads it by its suffix.
    assert found == one / "ink_v1.safetensors" and found.is_symlink()
    assert file_sha256(found) == hashlib.sha256(data).hexdigest()
    assert resolve(LoraSpec("b", "someone/two-loras/sub/b.safetensors")) == two / "sub" / "b.safetensors"
    assert resolve(LoraSpec("a", "someone/two-loras", weight_name="a.safetensors")) == two / "a.safetensors"
    # One file at the top is the adapter; files in subfolders are only looked at without one.
    assert resolve(LoraSpec("x", "someone/two-loras")) == two / "a.safetensors"
    fake_hub_cache(cache, "someone/many", {"4steps.safetensors": data, "8steps.safetensors": data})
    with pytest.raises(LookupError, match=r"several .safetensors files \(4steps.safetensors, "
                                          r"8steps.safetensors\); set weight_name"):
        resolve(LoraSpec("x", "someone/many"))
    with pytest.raises(LookupError, match="not in the Hugging Face cache.*huggingface-cli download someone/absent"):
        resolve(LoraSpec("x", "someone/absent"))
    with pytest.raises(LookupError, match="not in the Hugging Face cache"):
        resolve(LoraSpec("x", "someone/ink-lora", weight_name="other.safetensors"))


def test_a_cached_model_id_loads_into_the_backend(tiny_model_dir, tmp_path, lora_dir, monkeypatch,
                                                   picture):
    data = (lora_dir / "ink.safetensors").read_bytes()
    fake_hub_cache(tmp_path / "hub", "someone/ink-lora", {"ink.safetensors": data})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    backend = get_backend("tiny", loras=[{"name": "hub-ink", "source": "someone/ink-lora"}], **FAST)
    result = edit(backend, picture, loras=("hub-ink",))
    assert backend.lora_problems == {}
    [record] = result.info["loras"]
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["source"] == "someone/ink-lora" and record["file"] == "ink.safetensors"


def test_the_sha256_is_the_files_and_is_remembered(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"first")
    assert file_sha256(path) == sha(path)
    reads = []
    real_open = open

    def counting_open(*args, **kwargs):
        reads.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    file_sha256(path)
    assert reads == []  # same path, time and size: not read again
    path.write_bytes(b"second, longer")
    assert file_sha256(path) == hashlib.sha256(b"second, longer").hexdigest()


# ----- loading, switching, recording -------------------------------------------------


def test_adapters_switch_between_jobs_without_reloading(plain, with_loras, picture, lora_dir,
                                                        monkeypatch):
    base = edit(plain, picture)
    loads = []
    monkeypatch.setattr(Adapters, "load", lambda *a, **k: loads.append(a))
    transformer = with_loras._edit_pipe.transformer
    assert sorted(transformer.peft_config) == ["ink", "rain"]

    none = edit(with_loras, picture)
    ink = edit(with_loras, picture, loras=("ink",))
    rain = edit(with_loras, picture, loras=[("rain", None)])
    off = edit(with_loras, picture)
    both = edit(with_loras, picture, loras=[("ink", 0.5), ("rain", 1.5)])
    ink_again = edit(with_loras, picture, loras=[("ink", 1.0)])
    weaker = edit(with_loras, picture, loras=[("ink", 0.25)])

    assert same(none, base) and same(off, base)  # loaded but off: the base model's picture
    assert "loras" not in none.info
    assert not same(ink, base) and not same(rain, base) and not same(ink, rain)
    assert not any(same(both, other) for other in (base, ink, rain))
    assert same(ink_again, ink) and not same(weaker, ink)
    assert loads == []  # nothing was loaded again
    assert sorted(transformer.peft_config) == ["ink", "rain"]

    assert both.info["loras"] == [
        {"name": "ink", "sha256": sha(lora_dir / "ink.safetensors"), "scale": 0.5,
         "source": str(lora_dir / "ink.safetensors"), "file": "ink.safetensors"},
        {"name": "rain", "sha256": sha(lora_dir / "rain.safetensors"), "scale": 1.5,
         "source": str(lora_dir / "rain.safetensors"), "file": "rain.safetensors"},
    ]
    assert ink.info["loras"][0]["scale"] == 1.0  # the configured scale when none is named


def test_the_configured_scale_is_the_default(tiny_model_dir, lora_dir, picture):
    backend = get_backend("tiny", loras=specs(lora_dir, "ink", ink={"scale": 0.25}), **FAST)
    default = edit(backend, picture, loras=("ink",))
    assert default.info["loras"][0]["scale"] == 0.25
    assert same(default, edit(backend, picture, loras=[("ink", 0.25)]))
    assert not same(default, edit(backend, picture, loras=[("ink", 1.0)]))


def test_text_to_image_uses_the_adapters_of_its_transformer(with_loras):
    def fox(**options):
        return with_loras.generate(GenerateRequest("a fox", seed=2, width=128, height=128, **options))

    base, rain = fox(), fox(loras=("rain",))
    assert not same(base, rain) and same(fox(), base)
    assert rain.info["loras"][0]["name"] == "rain"


def test_every_key_spelling_gives_the_same_picture(tiny_model_dir, tmp_path, transformer, picture):
    weights = lora_weights(transformer, seed=7, rank=4)
    from safetensors.torch import save_file

    entries = []
    for style in STYLES:
        alpha = 2.0 if style in ("comfy", "kohya") else None  # alpha/rank = 1/2, folded back
        save_file(keyed(weights, style, alpha), str(tmp_path / f"{style}.safetensors"))
        entries += specs(tmp_path, style)
    backend = get_backend("tiny", loras=entries, **FAST)
    results = {style: edit(backend, picture, loras=(style,)) for style in STYLES}
    assert backend.lora_problems == {}
    assert not same(results["diffusers"], edit(backend, picture))
    for style in STYLES[1:]:
        assert same(results[style], results["diffusers"]), style


# ----- refusing what does not fit ------------------------------------------------------


def test_a_lora_that_does_not_fit_is_refused_by_name(plain, with_loras, picture):
    problems = with_loras.lora_problems
    assert set(problems) == {"wide", "flux"}
    assert problems["wide"].startswith("The LoRA 'wide' does not fit this model:")
    assert "wrong shape" in problems["wide"] and "takes 32 inputs" in problems["wide"]
    assert "name no layer of this model" in problems["flux"]
    assert "single_transformer_blocks" in problems["flux"]
    with pytest.raises(BadRequest, match="The LoRA 'wide' does not fit this model"):
        edit(with_loras, picture, loras=("ink", "wide"))
    with pytest.raises(BadRequest, match=r"no LoRA called 'typo' here \(offered: ink, rain, wide, flux\)"):
        edit(with_loras, picture, loras=("typo",))
    # The model stays usable, with nothing of the refused adapters in it.
    assert sorted(with_loras._edit_pipe.transformer.peft_config) == ["ink", "rain"]
    assert same(edit(with_loras, picture), edit(plain, picture))
    status = {s["name"]: s["problem"] for s in with_loras.lora_status()}
    assert status["ink"] is None and status["wide"] == problems["wide"]


@pytest.mark.parametrize("kind", ["shapes", "keys"])
def test_refusing_leaves_the_pipeline_as_it_was(with_loras, tmp_path, transformer, picture, kind):
    pipe = with_loras._edit_pipe
    adapters = lora_tools.adapters_of(pipe.transformer)
    before = adapter_state(pipe.transformer)
    result = edit(with_loras, picture, loras=("ink",))
    path = misfit(tmp_path / "bad.safetensors", transformer, kind)
    with pytest.raises(LoraError, match="The LoRA 'bad' does not fit this model"):
        adapters.load(LoraSpec("bad", str(path)))
    assert adapter_state(pipe.transformer) == before
    assert adapters.active == {"ink": 1.0}  # what was on stays on
    assert same(edit(with_loras, picture, loras=("ink",)), result)


def test_a_load_that_fails_half_way_is_undone(plain, with_loras, lora_dir, picture, monkeypatch):
    pipe = with_loras._edit_pipe
    adapters = lora_tools.adapters_of(pipe.transformer)
    before = adapter_state(pipe.transformer)
    real = pipe.load_lora_into_transformer

    def half_then_fail(*args, **kwargs):
        real(*args, **kwargs)  # the layers are in...
        raise RuntimeError("size mismatch for lora_B")  # ...then the load breaks

    monkeypatch.setattr(pipe, "load_lora_into_transformer", half_then_fail, raising=False)
    with pytest.raises(LoraError, match="The LoRA 'late' could not be loaded into this model: size mismatch"):
        adapters.load(LoraSpec("late", str(lora_dir / "ink.safetensors")))
    monkeypatch.undo()
    assert adapter_state(pipe.transformer) == before
    assert not lora_tools._layers_holding(pipe.transformer, "late")
    assert "late" not in adapters.loaded
    assert same(edit(with_loras, picture), edit(plain, picture))


def test_a_missing_file_is_refused_and_the_rest_load(tiny_model_dir, lora_dir, picture):
    entries = specs(lora_dir, "ink") + [{"name": "gone", "source": "/nowhere/gone.safetensors"}]
    backend = get_backend("tiny", loras=entries, **FAST)
    assert edit(backend, picture, loras=("ink",)).info["loras"][0]["name"] == "ink"
    assert backend.lora_problems == {
        "gone": "The LoRA 'gone' was not found: /nowhere/gone.safetensors is not a file or "
                "folder on this machine."}
    with pytest.raises(BadRequest, match="'gone' was not found"):
        edit(backend, picture, loras=("gone",))


# ----- memory -------------------------------------------------------------------------


def test_switching_does_not_grow_anything(with_loras, picture):
    transformer = with_loras._edit_pipe.transformer
    adapters = lora_tools.adapters_of(transformer)
    selections = [{}, {"ink": 1.0}, {"rain": 0.5}, {"ink": 0.3, "rain": 1.2}, {}]
    edit(with_loras, picture, loras=("ink",))  # warm: first-call caches settle

    def tensors():
        gc.collect()
        return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))

    before, count = adapter_state(transformer), tensors()
    tracemalloc.start()
    first = tracemalloc.take_snapshot()
    for i in range(10):
        adapters.activate(selections[i % len(selections)])
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(first, "filename"))
    tracemalloc.stop()
    assert adapter_state(transformer) == before
    assert tensors() == count
    assert grown < 64 * 1024, grown
    # And whole jobs in between switches leave the adapters as they were.
    for i in range(3):
        edit(with_loras, picture, loras=tuple(selections[i % len(selections)].items()))
    assert adapter_state(transformer) == before


# ----- with Lightning and with a second transformer ---------------------------------------


def test_adapters_work_on_top_of_fused_lightning(tiny_model_dir, tmp_path, transformer, lora_dir, picture):
    from pipelines.qwen import QwenBackend

    lightning = make_tiny_lora(tmp_path / "lightning.safetensors", transformer, seed=9,
                               layers=("attn.to_q", "attn.to_k"))
    settings = dict(model=str(tiny_model_dir), device="cpu", t2i_model=None, cpu_threads=1,
                    lightning=4, lightning_lora=str(lightning), **FAST)
    alone = QwenBackend(**settings)
    both = QwenBackend(loras=specs(lora_dir, "ink"), **settings)
    plain = alone.edit(EditRequest("make it night", images=(picture,), seed=5))
    off = both.edit(EditRequest("make it night", images=(picture,), seed=5))
    ink = both.edit(EditRequest("make it night", images=(picture,), seed=5, loras=("ink",)))
    # Lightning is part of the weights; the community adapter is the only one.
    assert sorted(both._edit_pipe.transformer.peft_config) == ["ink"]
    assert same(off, plain) and not same(ink, plain)
    assert ink.info["lightning"] == 4 and ink.info["loras"][0]["name"] == "ink"


def test_an_unfused_adapter_stays_on_through_every_switch(tiny_model_dir, tmp_path, transformer,
                                                          lora_dir, picture):
    """Under nf4 the Lightning LoRA stays a separate adapter named "lightning"."""
    backend = get_backend("tiny", **FAST)
    backend.load()
    pipe = backend._edit_pipe
    make_tiny_lora(tmp_path / "lightning.safetensors", transformer, seed=9)
    pipe.load_lora_weights(str(tmp_path), weight_name="lightning.safetensors", adapter_name="lightning")
    lightning_only = edit(backend, picture)
    adapters = Adapters(pipe)
    assert adapters.keep == {"lightning": 1.0}
    adapters.load(LoraSpec("ink", str(lora_dir / "ink.safetensors")))
    lora_tools.attach(pipe.transformer, adapters)
    assert same(edit(backend, picture), lightning_only)
    with_ink = edit(backend, picture, loras=("ink",))
    assert sorted(pipe.get_active_adapters()) == ["ink", "lightning"]
    assert not same(with_ink, lightning_only)
    assert same(edit(backend, picture), lightning_only)
    with pytest.raises(LoraError, match="'lightning' is already taken"):
        adapters.load(LoraSpec("lightning", str(lora_dir / "ink.safetensors")))


def test_each_transformer_gets_the_adapters_made_for_it(tiny_model_dir, tmp_path, lora_dir, picture):
    # A copy of the tiny model as the text-to-image model: a second transformer.
    t2i_model = tmp_path / "tiny-t2i"
    shutil.copytree(tiny_model_dir, t2i_model)
    backend = get_backend("tiny", t2i_model=str(t2i_model), t2i_mode="pipeline",
                          loras=specs(lora_dir, "ink", "rain", rain={"target": "t2i"}), **FAST)
    plain_edit = edit(backend, picture)
    skipped = edit(backend, picture, loras=("rain",))
    assert same(skipped, plain_edit) and skipped.info["loras_skipped"] == ["rain"]
    assert "loras" not in skipped.info

    def fox(**options):
        return backend.generate(GenerateRequest("a fox", seed=2, width=128, height=128, **options))

    base, rain, ink = fox(), fox(loras=("rain",)), fox(loras=("ink", "rain"))
    assert backend._t2i_pipe.transformer is not backend._edit_pipe.transformer
    assert sorted(backend._t2i_pipe.transformer.peft_config) == ["rain"]
    assert sorted(backend._edit_pipe.transformer.peft_config) == ["ink"]
    assert not same(base, rain) and same(ink, rain)
    assert ink.info["loras_skipped"] == ["ink"] and ink.info["loras"][0]["name"] == "rain"


# ----- on a GPU: every memory profile, and no memory kept by switching -----------------

has_cuda = torch.cuda.is_available()


@pytest.mark.skipif(not has_cuda, reason="needs an NVIDIA GPU")
@pytest.mark.cuda
@pytest.mark.parametrize("profile", ["full", "model-offload", "group-offload", "fp8"])
def test_cuda_switching_under_each_profile_keeps_no_memory(tiny_model_dir, tmp_path, transformer,
                                                           picture, profile):
    """Adapters load before the levers and placing, so offload groups, fp8 and the
    device move all see them; a switch then only flips flags and scales."""
    make_tiny_lora(tmp_path / "ink.safetensors", transformer, seed=1, rank=16)
    make_tiny_lora(tmp_path / "rain.safetensors", transformer, seed=2, rank=4)
    backend = get_backend("tiny", device="cuda", dtype="bfloat16", profile=profile,
                          loras=specs(tmp_path, "ink", "rain"), **FAST)
    selections = [(), ("ink",), ("rain",), (("ink", 0.5), ("rain", 1.5))]
    allocated, firsts = [], {}
    for cycle in range(3):
        for selection in selections:
            result = edit(backend, picture, loras=selection)
            firsts.setdefault(selection, result)
            assert same(result, firsts[selection]), (profile, cycle, selection)
        torch.cuda.synchronize()
        allocated.append(torch.cuda.memory_allocated())
    assert not same(firsts[()], firsts[("ink",)])
    assert allocated[2] <= allocated[0] + (1 << 20), allocated  # nothing kept per switch
