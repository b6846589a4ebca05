"""What prompt polishing costs per turn.

Owns three figures (``pipelines.polish``):
- the local engine on the tiny model path: ``LocalPolisher.polish`` with the real
  ``generate()`` on the tiny random text encoder, an edit (one 1024x768 picture, two
  earlier instructions) and a generation; median of N runs. The tiny model writes
  gibberish to its token limit, so every run falls back: this is the cost of the
  code path (templating, processor, vision tower, greedy decoding), not of a real
  rewrite.
- the remote engine against a fake OpenAI-compatible server on 127.0.0.1: the round
  trip with the picture as a data URL (JPEG encoding, JSON, HTTP, reading the answer).
- for a GPU, an estimate, labelled as one (no 7B weights are on this machine), with
  its reasoning. ``--gpu`` measures instead, on a CUDA card: the local engine on a
  random-weight model of Qwen2.5-VL-7B-Instruct's exact shape, 150 new tokens forced
  (speed does not depend on the values; the tokenizer is the tiny model's, so the
  prompt's text is tokenized into a few more tokens than the real one would make).

Run: .venv/bin/python bench/polish.py [--runs 10]    (about 20 s on a CPU)
     python3 bench/polish.py --gpu                   (a CUDA card; torch and transformers only)
     .venv/bin/python bench/polish.py --gpu --smoke  (the --gpu code on the CPU at tiny sizes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image  # noqa: E402

from pipelines.polish import LocalPolisher, PolishRequest, RemotePolisher  # noqa: E402

HISTORY = ("make it night", "add a red hat to the woman")
EDIT = "now add rain but keep the hat"
GENERATE = "a red fox in the snow"
DECODE_TOKENS = 150  # a typical rewrite: about 100 words and the JSON around them

# The GPU estimate's inputs (see estimate()).
LM_PARAMS = 7.6e9  # Qwen2.5-VL-7B language model with lm_head, read once per new token
H100_BANDWIDTH = 3.35e12  # bytes/s, H100 SXM HBM3
HF_TOKENS_PER_S = (30, 50)  # transformers generate(), batch 1, bf16, no CUDA graphs


def picture() -> Image.Image:
    """A real photo at 1024x768 (noise would make a JPEG several times larger)."""
    return Image.open(ROOT / "tests" / "fixtures" / "chelsea.png").convert("RGB").resize((1024, 768))


class Counted:
    """Wraps ``model.generate`` on the instance to count the new tokens of each call."""

    def __init__(self, model):
        self.model, self.original, self.tokens = model, model.generate, []
        model.generate = self

    def __call__(self, *args, **kwargs):
        out = self.original(*args, **kwargs)
        self.tokens.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    def restore(self):
        self.model.generate = self.original


def timed(fn, runs: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def line(label: str, times: list[float], extra: str = "") -> str:
    ms = [t * 1000 for t in times]
    return (f"  {label:<38} median {statistics.median(ms):8.1f} ms   "
            f"min {min(ms):8.1f}   max {max(ms):8.1f}   (n={len(ms)}){extra}")


def tiny_local(runs: int) -> None:
    from pipelines import get_backend

    print("Local engine, tiny model path (CPU, float32, 1 torch thread as the tiny backend runs):")
    started = time.perf_counter()
    backend = get_backend("tiny")
    polisher = backend.polisher()
    print(f"  loading the tiny pipeline (once, not per polish): {time.perf_counter() - started:.1f} s")
    counter = Counted(polisher.model)
    image = picture()
    cases = (
        ("edit, 1 picture, 2 earlier turns", PolishRequest(EDIT, HISTORY, (image,))),
        ("generation, no picture", PolishRequest(GENERATE, op="generate")),
    )
    try:
        for label, request in cases:
            counter.tokens.clear()
            results = []
            times = timed(lambda: results.append(polisher.polish(request)), runs)
            tokens = statistics.median(counter.tokens)
            per_token = statistics.median(times) / max(tokens, 1) * 1000
            print(line(label, times, f"   {tokens:.0f} new tokens, {per_token:.2f} ms/token"))
            fell_back = sum(not r.polished for r in results)
            print(f"  {'':38} fell back {fell_back}/{len(results)}: {results[-1].reason!r}")
    finally:
        counter.restore()


def remote(runs: int) -> None:
    from fake_chat_server import FakeChatServer

    print("Remote engine against a fake chat server on 127.0.0.1 (round trip, answer at once):")
    answer = {"prompt": "Add heavy rain across the scene; keep the red hat and everything else unchanged."}
    with FakeChatServer(answer=answer) as server:
        polisher = RemotePolisher(server.url, "Qwen/Qwen2.5-VL-7B-Instruct", timeout=10)
        for label, request in (
            ("edit, 1 picture as a data URL", PolishRequest(EDIT, HISTORY, (picture(),))),
            ("generation, text only", PolishRequest(GENERATE, op="generate")),
        ):
            results = []
            times = timed(lambda: results.append(polisher.polish(request)), runs * 2)
            assert all(r.polished for r in results), results[-1]
            size = len(str(server.requests[-1]["body"]))
            print(line(label, times, f"   request ~{size / 1000:.0f} kB"))


def estimate() -> None:
    floor_ms = LM_PARAMS * 2 / H100_BANDWIDTH * 1000
    low, high = HF_TOKENS_PER_S
    print("GPU: ESTIMATE, NOT MEASURED (local engine, Qwen2.5-VL-7B-Instruct in bf16, one H100 SXM):")
    print(f"  - each new token reads the whole language model, ~{LM_PARAMS / 1e9:.1f} B weights = "
          f"{LM_PARAMS * 2 / 1e9:.1f} GB; at {H100_BANDWIDTH / 1e12:.2f} TB/s that is a floor of "
          f"{floor_ms:.1f} ms/token (~{1000 / floor_ms:.0f} tokens/s).")
    print(f"  - transformers' generate() at batch 1 without CUDA graphs runs well above the floor "
          f"(kernel launches and Python per layer): about {low}-{high} tokens/s.")
    print(f"  - a rewrite of ~{DECODE_TOKENS} tokens: {DECODE_TOKENS / high:.1f}-{DECODE_TOKENS / low:.1f} s, "
          "plus the prefill (~1,000 prompt tokens with one 512x512 picture, ~330 vision tokens): "
          "~0.1-0.2 s.")
    print(f"  => about {DECODE_TOKENS / high + 0.1:.0f}-{DECODE_TOKENS / low + 0.2:.0f} s per polish on top of the edit; "
          "a vLLM server (remote engine) would take ~1-1.5 s for the same rewrite.")
    print("  Recorded once with --gpu on an NVIDIA H200 (random weights of the 7B's shape, bf16, sdpa, "
          "transformers 5.17): prefill 119 ms, 20.4 ms/token (49 tokens/s), 3.15 s for 150 tokens, "
          "+0.38 GiB of GPU memory over the text encoder's weights.")
    print("  Run `python3 bench/polish.py --gpu` on a CUDA card to measure it again.")


# Qwen2.5-VL-7B-Instruct's config (text and vision), and --smoke's tiny stand-in.
TEXT_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
               rms_norm_eps=1e-6, tie_word_embeddings=False,
               rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [16, 24, 24]})
VISION_7B = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                 patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                 fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
TEXT_SMOKE = dict(TEXT_7B, vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]})
VISION_SMOKE = dict(VISION_7B, depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                    out_hidden_size=64, fullatt_block_indexes=[1])


def gpu(runs: int, smoke: bool = False) -> None:
    """The local engine on CUDA, a random-weight model of Qwen2.5-VL-7B-Instruct's shape
    (``smoke``: the same code on the CPU with a tiny model, to check it in seconds)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from pipelines.tiny_model import SPECIAL_TOKENS, _build_processor, _build_tokenizer

    device = "cpu" if smoke else "cuda"
    assert smoke or torch.cuda.is_available(), "--gpu needs a CUDA card"
    cuda = device == "cuda"
    processor = _build_processor(_build_tokenizer())
    ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(TEXT_SMOKE if smoke else TEXT_7B,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(VISION_SMOKE if smoke else VISION_7B),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    started = time.perf_counter()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, attn_implementation="sdpa").eval()
    finally:
        torch.set_default_dtype(old)
    params = sum(p.numel() for p in model.parameters())
    where = torch.cuda.get_device_name() if cuda else "the CPU (--smoke: tiny sizes, not a figure)"
    print(f"GPU: MEASURED on {where} - local engine, random weights of "
          f"{'a tiny stand-in for ' if smoke else ''}Qwen2.5-VL-7B-Instruct's shape ({params / 1e9:.2f} B parameters, bf16, sdpa), "
          f"built in {time.perf_counter() - started:.0f} s")
    counter = Counted(model)
    request = PolishRequest(EDIT, HISTORY, (picture(),))
    figures = {}
    for new_tokens in (1, DECODE_TOKENS):
        model.generation_config.min_new_tokens = new_tokens  # random weights: no early stop
        polisher = LocalPolisher(model, processor, max_new_tokens=new_tokens, device=device)
        counter.tokens.clear()

        def run():
            result = polisher.polish(request)
            if cuda:
                torch.cuda.synchronize()
            return result

        times = timed(run, runs, warmup=2)
        figures[new_tokens] = statistics.median(times)
        print(line(f"edit, 1 picture, {new_tokens} new token(s)", times,
                   f"   {statistics.median(counter.tokens):.0f} generated"))
    decode = (figures[DECODE_TOKENS] - figures[1]) / (DECODE_TOKENS - 1)
    print(f"  prefill (prompt + picture, first token): {figures[1] * 1000:.0f} ms; decoding "
          f"{decode * 1000:.1f} ms/token ({1 / decode:.0f} tokens/s); "
          f"a {DECODE_TOKENS}-token polish: {figures[DECODE_TOKENS]:.2f} s")
    if cuda:
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        print(f"  GPU memory: weights {weights / 2**30:.1f} GiB (the pipeline's own text encoder), "
              f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB: polishing adds "
              f"{(torch.cuda.max_memory_allocated() - weights) / 2**30:.2f} GiB of activations and KV cache")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per figure (after a warm-up)")
    parser.add_argument("--gpu", action="store_true", help="measure the local engine on a CUDA card")
    parser.add_argument("--smoke", action="store_true", help="with --gpu: the same code on the CPU, tiny sizes")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.gpu:
        gpu(args.runs, smoke=args.smoke)
    else:
        tiny_local(args.runs)
        print()
        remote(args.runs)
        print()
        estimate()
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
