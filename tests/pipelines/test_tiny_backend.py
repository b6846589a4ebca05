"""The tiny backend: the real diffusers code path on a tiny random model, on the CPU."""

from __future__ import annotations

import hashlib
import statistics
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from pipelines import Cancelled, EditRequest, GenerateRequest, Result
from pipelines.tiny import TINY_NOTE, TINY_STEPS
from pipelines.tiny_model import ensure_tiny_model, is_built


def edit(backend, images, prompt="make it night", **options):
    return backend.edit(EditRequest(prompt, images=tuple(images), **options))


def test_one_image_edit_returns_the_upload_size_and_says_what_it_did(tiny, photo):
    result = edit(tiny, [photo], seed=7)
    assert isinstance(result, Result)
    assert result.image.mode == "RGB"
    assert result.image.size == photo.size
    assert result.seed == 7
    assert result.steps == TINY_STEPS
    assert result.elapsed_s > 0
    info = result.info
    assert info["backend"] == "tiny"
    assert info["note"] == TINY_NOTE
    assert info["mode"] == "edit"
    assert info["pipeline"] == "QwenImageEditPlusPipeline"
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["steps"] == TINY_STEPS and info["steps_run"] == TINY_STEPS
    assert info["true_cfg_scale"] == 4.0
    assert info["seed"] == 7
    assert info["input_sizes"] == [[1024, 768]]
    assert (info["width"], info["height"]) == (1024, 768)
    assert [info["generate_width"], info["generate_height"]] == info["vae_sizes"][0]
    assert set(info["versions"]) == {"diffusers", "transformers", "torch"}
    json.dumps(info)  # plain data, storable as is


def test_two_image_edit_uses_both_pictures(tiny, photo, make_picture):
    reference = make_picture(640, 480, seed=2)
    one = edit(tiny, [photo], seed=3)
    two = edit(tiny, [photo, reference], seed=3)
    assert two.image.size == photo.size
    assert two.info["input_sizes"] == [[1024, 768], [640, 480]]
    assert len(two.info["vae_sizes"]) == len(two.info["condition_sizes"]) == 2
    # Picture 2 reaches the model: same seed and prompt, different result.
    assert not np.array_equal(np.asarray(one.image), np.asarray(two.image))


def test_text_to_image_shares_the_tiny_model(tiny):
    result = tiny.generate(GenerateRequest("a red fox in the snow", seed=5))
    assert result.image.size == (1328, 1328)  # Qwen-Image's default, as the real one
    assert result.info["mode"] == "generate"
    assert result.info["pipeline"] == "QwenImagePipeline"
    assert result.info["negative_prompt"] == " "
    assert tiny._t2i_pipe.transformer is tiny._edit_pipe.transformer
    assert tiny._t2i_pipe.text_encoder is tiny._edit_pipe.text_encoder
    sized = tiny.generate(GenerateRequest("a fox", seed=5, width=640, height=360))
    assert sized.image.size == (640, 360)


def test_same_seed_same_image_other_seed_other_image(tiny, photo):
    a = edit(tiny, [photo], seed=11)
    b = edit(tiny, [photo], seed=11)
    c = edit(tiny, [photo], seed=12)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    g1 = tiny.generate(GenerateRequest("a fox", seed=4))
    g2 = tiny.generate(GenerateRequest("a fox", seed=4))
    assert np.array_equal(np.asarray(g1.image), np.asarray(g2.image))


def test_without_a_seed_the_one_drawn_is_reported_and_replays(tiny, photo):
    first = edit(tiny, [photo])
    second = edit(tiny, [photo])
    assert isinstance(first.seed, int) and first.seed == first.info["seed"]
    assert first.seed != second.seed
    replay = edit(tiny, [photo], seed=first.seed)
    assert np.array_equal(np.asarray(first.image), np.asarray(replay.image))


def test_progress_once_per_step_with_previews(tiny, photo):
    calls = []
    tiny.edit(EditRequest("x", images=(photo,), seed=1, steps=6),
              progress=lambda step, total, preview: calls.append((step, total, preview)))
    assert [(step, total) for step, total, _ in calls] == [(i, 6) for i in range(1, 7)]
    previews = [p for _, _, p in calls if p is not None]
    assert previews, "expected at least one preview image"
    for preview in previews:
        assert isinstance(preview, Image.Image) and preview.mode == "RGB"
        assert max(preview.size) <= 256
        assert np.asarray(preview).std() > 0  # a picture, not a blank


def test_previews_cost_little_next_to_the_steps(tiny, photo, monkeypatch):
    spent = []
    real = tiny._previewer

    def timed(*args):
        started = time.perf_counter()
        out = real(*args)
        spent.append(time.perf_counter() - started)
        return out

    monkeypatch.setattr(tiny, "_previewer", timed)
    steps = []
    result = tiny.edit(EditRequest("x", images=(photo,), seed=1, steps=8),
                       progress=lambda step, total, preview: steps.append(time.perf_counter()))
    assert len(spent) >= 3
    # Medians, so one scheduling hiccup on a busy machine does not decide the test.
    step_time = statistics.median(np.diff(steps))
    assert statistics.median(spent) < 0.05 * step_time, (spent, step_time, result.elapsed_s)


def test_cancel_stops_within_one_step_and_keeps_nothing(tiny, photo):
    cancel = threading.Event()
    steps = []

    def progress(step, total, preview):
        steps.append(step)
        if step == 1:
            cancel.set()

    pipe = tiny._edit_pipeline()
    decodes = []
    real_decode = pipe.vae.decode
    pipe.vae.decode = lambda *a, **k: (decodes.append(1), real_decode(*a, **k))[1]
    try:
        with pytest.raises(Cancelled):
            tiny.edit(EditRequest("x", images=(photo,), seed=1, steps=8),
                      progress=progress, cancel=cancel)
    finally:
        pipe.vae.decode = real_decode
    assert steps == [1]
    assert decodes == []  # the image nobody will keep is not decoded either


def test_cancel_before_start_runs_nothing(tiny):
    cancel = threading.Event()
    cancel.set()
    steps = []
    with pytest.raises(Cancelled):
        tiny.generate(GenerateRequest("a fox"), progress=lambda *a: steps.append(a),
                      cancel=cancel)
    assert steps == []


def test_the_backend_runs_again_after_a_cancel(tiny, photo):
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        tiny.edit(EditRequest("x", images=(photo,), seed=1),
                  progress=lambda step, total, p: cancel.set(), cancel=cancel)
    steps = []
    result = tiny.edit(EditRequest("x", images=(photo,), seed=1),
                       progress=lambda step, total, p: steps.append(step))
    assert steps == list(range(1, TINY_STEPS + 1))
    assert result.info["steps_run"] == TINY_STEPS


def test_a_failing_progress_display_does_not_lose_the_image(tiny, photo):
    def broken(step, total, preview):
        raise RuntimeError("socket closed")

    result = tiny.edit(EditRequest("x", images=(photo,), seed=1), progress=broken)
    assert result.image.size == photo.size and result.info["steps_run"] == TINY_STEPS


def test_concurrent_calls_match_sequential_ones(tiny, photo, make_picture):
    small = make_picture(300, 500, seed=8)
    jobs = {
        "a": lambda: tiny.edit(EditRequest("x", images=(photo,), seed=21)),
        "b": lambda: tiny.edit(EditRequest("y", images=(small, photo), seed=22)),
        "c": lambda: tiny.generate(GenerateRequest("z", seed=23)),
    }
    alone = {k: np.asarray(job().image) for k, job in jobs.items()}
    together = {}
    threads = [threading.Thread(target=lambda k=k, job=job: together.__setitem__(k, job()))
               for k, job in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key in jobs:
        assert np.array_equal(np.asarray(together[key].image), alone[key]), key


@pytest.mark.parametrize("size", [(1000, 667), (97, 1301)])
def test_odd_sizes_come_back_at_the_input_size(tiny, make_picture, size):
    result = edit(tiny, [make_picture(*size, seed=3)], seed=1)
    assert result.image.size == size
    gw, gh = result.info["generate_width"], result.info["generate_height"]
    assert gw % 16 == 0 and gh % 16 == 0


def test_a_requested_size_is_returned_exactly(tiny, photo):
    result = edit(tiny, [photo], seed=1, width=500, height=300)
    assert result.image.size == (500, 300)
    assert (result.info["width"], result.info["height"]) == (500, 300)


def test_grey_and_transparent_uploads_are_edited(tiny, make_picture):
    grey = make_picture(200, 150, seed=4, mode="L")
    rgba = make_picture(120, 90, seed=5, mode="RGBA")
    result = edit(tiny, [grey, rgba], seed=2)
    assert result.image.size == (200, 150) and result.image.mode == "RGB"


def _record_calls(backend, monkeypatch, pipe_attr="_edit_pipe"):
    pipe = getattr(backend, pipe_attr)
    seen = []
    real_call = type(pipe).__call__

    def recording(self, *args, **kwargs):
        seen.append(kwargs)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", recording)
    return seen


def test_true_cfg_stays_on_with_a_blank_negative_prompt(tiny, photo, monkeypatch):
    seen = _record_calls(tiny, monkeypatch)
    result = edit(tiny, [photo], seed=1)
    assert seen[-1]["negative_prompt"] == " "
    assert seen[-1]["true_cfg_scale"] == 4.0
    assert result.info["negative_prompt"] == " "

    edit(tiny, [photo], seed=1, negative_prompt="blurry")
    assert seen[-1]["negative_prompt"] == "blurry"

    # With guidance off a negative prompt would only earn a warning.
    edit(tiny, [photo], seed=1, true_cfg_scale=1.0)
    assert seen[-1]["negative_prompt"] is None


def test_the_pipeline_gets_explicit_sizes_and_picture_1_first(tiny, photo, make_picture,
                                                              monkeypatch):
    seen = _record_calls(tiny, monkeypatch)
    reference = make_picture(300, 600, seed=9)
    result = edit(tiny, [photo, reference], seed=1)
    call = seen[-1]
    assert [img.size for img in call["image"]] == [(1024, 768), (300, 600)]
    assert (call["width"], call["height"]) == tuple(result.info["vae_sizes"][0])
    assert call["num_inference_steps"] == TINY_STEPS


def test_text_to_image_also_defaults_the_negative_prompt(tiny, monkeypatch):
    tiny.generate(GenerateRequest("warm up", seed=1))
    seen = _record_calls(tiny, monkeypatch, "_t2i_pipe")
    tiny.generate(GenerateRequest("a fox", seed=1))
    assert seen[-1]["negative_prompt"] == " " and seen[-1]["true_cfg_scale"] == 4.0


def test_the_tiny_model_is_built_once_deterministically_and_atomically(tiny_model_dir, tmp_path):
    target = tmp_path / "again"
    errors = []

    def build():
        try:
            ensure_tiny_model(target)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert is_built(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "again.lock"]  # no leftovers
    for part in ("transformer/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors",
                 "tokenizer/vocab.json", "tokenizer/merges.txt"):
        assert _digest(target / part) == _digest(tiny_model_dir / part), part
    before = (target / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_model(target) == target
    assert (target / "model_index.json").stat().st_mtime_ns == before  # not rebuilt


def test_the_tiny_model_is_small_and_uses_the_real_scheduler(tiny_model_dir):
    from pipelines.tiny_model import QWEN_IMAGE_SCHEDULER_CONFIG

    total = sum(p.stat().st_size for p in tiny_model_dir.rglob("*") if p.is_file())
    assert total < 3_000_000
    config = json.loads((tiny_model_dir / "scheduler/scheduler_config.json").read_text())
    for key, value in QWEN_IMAGE_SCHEDULER_CONFIG.items():
        assert config[key] == value, key
    assert config["shift_terminal"] == 0.02 and config["time_shift_type"] == "exponential"


# The files of the published Qwen-Image-Edit-2509/2511 repos that loading reads.
PUBLISHED_FILES = {
    "model_index.json", "scheduler/scheduler_config.json",
    "transformer/config.json", "vae/config.json",
    "text_encoder/config.json", "text_encoder/generation_config.json",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "tokenizer/added_tokens.json", "tokenizer/special_tokens_map.json",
    "processor/preprocessor_config.json", "processor/video_preprocessor_config.json",
    "processor/tokenizer_config.json", "processor/tokenizer.json", "processor/vocab.json",
    "processor/merges.txt", "processor/added_tokens.json", "processor/special_tokens_map.json",
}


def test_the_tiny_model_is_laid_out_like_the_published_repo(tiny_model_dir):
    files = {str(p.relative_to(tiny_model_dir)) for p in tiny_model_dir.rglob("*") if p.is_file()}
    assert PUBLISHED_FILES <= files
    # transformers 5's own formats would hide what the published files need.
    assert "processor/processor_config.json" not in files
    assert "tokenizer/tokenizer.json" not in files
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert index["transformer"] == ["diffusers", "QwenImageTransformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLQwenImage"]
    for name in ("preprocessor_config.json", "video_preprocessor_config.json", "tokenizer_config.json"):
        config = json.loads((tiny_model_dir / "processor" / name).read_text())
        assert config["processor_class"] == "Qwen2VLProcessor", name
    assert json.loads((tiny_model_dir / "processor/video_preprocessor_config.json").read_text())[
        "video_processor_type"] == "Qwen2VLVideoProcessor"


def test_special_token_ids_agree_between_tokenizer_and_text_encoder(tiny):
    pipe = tiny._edit_pipe
    tok, config = pipe.tokenizer, pipe.text_encoder.config
    assert tok.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tok.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert tok.convert_tokens_to_ids("<|vision_end|>") == config.vision_end_token_id
    assert len(tok) <= config.text_config.vocab_size
    ids = tok("<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>")["input_ids"]
    assert config.image_token_id in ids and tok.convert_tokens_to_ids("<|im_start|>") == ids[0]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_step_delay_paces_each_step_and_progress_still_comes(tiny_model_dir):
    import time as _time

    from pipelines import EditRequest, get_backend

    backend = get_backend("tiny", step_delay_s=0.2)
    seen = []
    started = _time.monotonic()
    backend.edit(EditRequest("add a hat", images=(Image.new("RGB", (64, 48), "blue"),), steps=2, seed=1),
                 progress=lambda step, total, preview: seen.append(step))
    assert seen == [1, 2] and _time.monotonic() - started >= 0.4
