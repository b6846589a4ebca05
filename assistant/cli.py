"""The `qwen-edit-chat` command line: generate, edit and replay without the chat.

Owns argument parsing, loading and saving image files, the progress bar, and
replaying an exported history zip (`sessions/export.py` writes it) node by node.
Knows nothing of chainlit, the database or the web app, and imports only `pipelines`,
the standard library and PIL when it loads, so it starts fast; heavy imports (torch,
tqdm, numpy) happen when a command needs them.

Exit status: 0 done, 1 replay finished but some images differ, 2 error (one line on
stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import threading
import zipfile
from pathlib import Path
from typing import Callable, Optional

from PIL import Image, ImageOps, UnidentifiedImageError

import pipelines
from pipelines import BackendError, EditRequest, GenerateRequest, doctor, exact

from . import serve, users
from .service import keep_untouched

PROG = "qwen-edit-chat"
HISTORY_FORMAT = "qwen-edit-chat/history"
HISTORY_VERSION = 1
MODEL_KINDS = ("generate", "edit", "variation")
EXACT_KINDS = ("op",)


class CliError(Exception):
    """A problem with the command's input, shown to the user as one line."""


# -- the parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Edit and generate images with Qwen Image Edit, from the command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser("generate", help="make a fresh image from words",
                         description="Make a fresh image from a description.")
    gen.add_argument("prompt", help='what to make, e.g. "a red fox in snow"')
    gen.add_argument("-o", "--output", help="where to save the image (default: generate-SEED.png)")
    _add_run_options(gen)

    edit = sub.add_parser(
        "edit", help="edit an image (with references) by instruction",
        usage=f"{PROG} edit [options] IMAGE [IMAGE ...] INSTRUCTION",
        description="Edit Picture 1 by instruction; further images are references "
                    "(Picture 2, Picture 3...). The last argument is the instruction. How "
                    "many images the model takes: 3 for Qwen-Image-Edit-2509/2511, 10 for "
                    "Qwen-Image-2.1.")
    edit.add_argument("items", nargs="+", metavar="IMAGE/INSTRUCTION",
                      help="image files (up to the model's limit), then the instruction in quotes")
    edit.add_argument("-o", "--output", help="where to save the image (default: edit-SEED.png)")
    _add_run_options(edit)

    replay = sub.add_parser(
        "replay", help="re-run an exported history and check it reproduces",
        description="Re-run every image of an exported history zip with its recorded seed "
                    "and settings, in number order, and say whether each one reproduces.")
    replay.add_argument("history", help="the history .zip exported from the chat")
    replay.add_argument("-o", "--output", required=True, help="folder for the replayed images")
    _add_backend_options(replay)

    serve.add_parser(sub)
    users.add_parser(sub)
    doctor.add_parser(sub)
    return parser


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=pipelines.backend_names(),
                        help="image backend (default: qwen with a GPU, else tiny; "
                             "replay defaults to the recorded one)")
    parser.add_argument("--model", help="model id or folder for the backend")
    parser.add_argument("--profile", help="qwen memory profile: auto (the default), full, fp8, "
                                          "model-offload, nf4, group-offload")
    parser.add_argument("--url", help="remote backend: the server's base URL, e.g. http://gpu:8091/v1")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_backend_options(parser)
    parser.add_argument("--steps", type=int, help="denoising steps (at least 2)")
    parser.add_argument("--seed", type=int, help="random seed; the same seed gives the same image")
    parser.add_argument("--cfg", type=float, help="guidance strength (true_cfg_scale)")
    parser.add_argument("--size", type=_parse_size, metavar="WxH", help="output size, e.g. 1024x768")
    parser.add_argument("--negative", help="what to keep out of the image (negative prompt)")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x768, not {text!r}")


# -- commands ---------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    width, height = args.size or (None, None)
    request = GenerateRequest(prompt=args.prompt, seed=args.seed, steps=args.steps,
                              true_cfg_scale=args.cfg, negative_prompt=args.negative,
                              width=width, height=height)
    backend = _backend(args.backend, args)
    result = _run_with_bar(backend.generate, request, "generate")
    return _save_result(result, args.output or f"generate-{result.seed}.png")


def cmd_edit(args: argparse.Namespace) -> int:
    *paths, instruction = args.items
    if not paths:
        raise CliError("edit needs at least one image before the instruction, e.g. "
                       f'{PROG} edit photo.jpg "make it night" -o out.png')
    name = args.backend or pipelines.default_backend_name()
    limit = pipelines.max_pictures(name, args.model)
    if len(paths) > limit:
        model = f"the {args.model} model" if args.model else f"the {name} backend's model"
        raise CliError(f"edit takes at most {limit} images with {model}; "
                       f"got {len(paths)}. Put the instruction last, in quotes.")
    if Path(instruction).suffix and Path(instruction).is_file():
        raise CliError(f"the last argument must be the instruction, but {instruction!r} is a file.")
    images = tuple(load_image(p) for p in paths)
    width, height = args.size or (None, None)
    request = EditRequest(prompt=instruction, images=images, seed=args.seed, steps=args.steps,
                          true_cfg_scale=args.cfg, negative_prompt=args.negative,
                          width=width, height=height)
    backend = _backend(name, args)
    result = _run_with_bar(backend.edit, request, "edit")
    return _save_result(result, args.output or f"edit-{result.seed}.png")


def cmd_replay(args: argparse.Namespace) -> int:
    recipe, archive = _open_history(args.history)
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    backends: dict[str, object] = {}
    replayed: dict[int, Image.Image] = {}
    made = same = 0
    with archive:
        masks = _masks(archive)
        for node in sorted(recipe["nodes"], key=lambda n: n["number"]):
            number, kind = node["number"], node["kind"]
            label = f"#{number} {kind}"
            try:
                stored = archive.read(node["file"])
            except KeyError:
                raise CliError(f"{label}: {node['file']} is missing from {args.history}.") from None
            if hashlib.sha256(stored).hexdigest() != node.get("sha256"):
                print(f"{label}: warning: the zip's image does not match its recorded sha256",
                      file=sys.stderr)
            target = outdir / f"{number:04d}-{kind}.png"
            if kind == "upload":
                replayed[number] = _decode(stored, node["file"])
                target.write_bytes(stored)
                print(f"{label}: upload, copied from the zip -> {target}")
                continue
            if kind not in MODEL_KINDS + EXACT_KINDS:
                raise CliError(f"{label}: unknown kind {kind!r}; this replay knows "
                               f"upload, {', '.join(MODEL_KINDS + EXACT_KINDS)}.")
            params = node.get("params") or {}
            if kind in EXACT_KINDS:  # no model: the same exact operation on the same input
                image = _replay_op(node, params, replayed)
            else:
                name = args.backend or params.get("backend") or pipelines.default_backend_name()
                if name not in backends:
                    backends[name] = _backend(name, args)
                image = _replay_node(node, params, backends[name], replayed, masks)
            replayed[number] = image
            png = _png_bytes(image)
            target.write_bytes(png)
            made += 1
            verdict = _verdict(png, image, stored, node)
            same += verdict == "reproduced"
            print(f"{label}: {verdict} -> {target}")
    print(f"{same} of {made} model-made images reproduced exactly"
          + ("." if same == made else f"; {made - same} differ."))
    return 0 if same == made else 1


# Subcommand name -> function(args) -> exit status. Add `serve` and `users` here.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "generate": cmd_generate,
    "edit": cmd_edit,
    "replay": cmd_replay,
    "serve": serve.run,
    "users": users.run,
    "doctor": doctor.run,
}


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (BackendError, CliError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


# -- helpers ---------------------------------------------------------------------------------


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _backend(name: Optional[str], args: argparse.Namespace):
    name = name or pipelines.default_backend_name()
    settings = {}
    if args.model:
        settings["model"] = args.model
    if args.profile:
        settings["profile"] = args.profile
    if args.url:
        settings["base_url"] = args.url
    if name in ("qwen", "tiny"):
        from .config import get_settings

        if get_settings().loras:  # adapters a replayed node may need (QEC_LORAS)
            settings["loras"] = get_settings().loras
    if name != "remote":
        _quiet_loading()
    try:
        return pipelines.get_backend(name, **settings)
    except TypeError as exc:
        given = ", ".join(f"--{k.replace('base_url', 'url')}" for k in settings)
        raise CliError(f"the {name} backend does not take {given} ({exc}).") from exc


def load_image(path: str) -> Image.Image:
    """An input picture, upright as the camera meant it, in RGB."""
    file = Path(path)
    if not file.is_file():
        raise CliError(f"no such image file: {path}")
    try:
        with Image.open(file) as img:
            img.load()
            return pipelines.base.to_rgb(ImageOps.exif_transpose(img))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise CliError(f"{path} is not an image that can be read ({type(exc).__name__}).") from exc


def _run_with_bar(call, request, label):
    """Run ``call`` with a steps bar on stderr, shown from the first step on."""
    from tqdm import tqdm

    bar = None
    lock = threading.Lock()

    def progress(step: int, total: int, preview) -> None:
        nonlocal bar
        with lock:
            if bar is None:
                bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr,
                           leave=False, dynamic_ncols=True)
            if bar.total != total:
                bar.total = total
            bar.update(max(0, step - bar.n))

    try:
        return call(request, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _quiet_loading() -> None:
    """Model loading draws its own bars; ours is the one worth watching."""
    for module in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            __import__(module, fromlist=["disable_progress_bar"]).disable_progress_bar()
        except (ImportError, AttributeError):
            pass


def _save_result(result, output: str) -> int:
    path = Path(output)
    try:
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        result.image.save(path)
    except ValueError as exc:
        raise CliError(f"cannot save {output}: use a file name ending in .png, .jpg or .webp.") from exc
    except OSError as exc:
        raise CliError(f"cannot save {output}: {exc.strerror or exc}.") from exc
    print(f"seed {result.seed}")
    print(f"saved {path}  ({result.image.width}x{result.image.height}, {result.elapsed_s:.1f} s)")
    return 0


def _open_history(path: str):
    file = Path(path)
    if not file.is_file():
        raise CliError(f"no such history file: {path}")
    try:
        archive = zipfile.ZipFile(file)
        recipe = json.loads(archive.read("recipe.json"))
    except zipfile.BadZipFile as exc:
        raise CliError(f"{path} is not a zip file; export the history from the chat first.") from exc
    except KeyError as exc:
        raise CliError(f"{path} has no recipe.json; it is not an exported history.") from exc
    except ValueError as exc:
        raise CliError(f"{path}: recipe.json is not valid JSON ({exc}).") from exc
    if recipe.get("format") != HISTORY_FORMAT:
        raise CliError(f"{path} is not a qwen-edit-chat history (format {recipe.get('format')!r}).")
    if recipe.get("version") != HISTORY_VERSION:
        raise CliError(f"{path} is history version {recipe.get('version')!r}; "
                       f"this program reads version {HISTORY_VERSION}.")
    return recipe, archive


def _masks(archive: zipfile.ZipFile) -> dict:
    """The painted regions the history holds, by sha256 (masks/<sha>.png)."""
    found = {}
    for name in archive.namelist():
        if name.startswith("masks/") and name.endswith(".png"):
            found[name[len("masks/"):-len(".png")]] = _decode(archive.read(name), name).convert("L")
    return found


def _replay_node(node: dict, params: dict, backend, replayed: dict, masks: dict):
    label = f"#{node['number']} {node['kind']}"
    if params.get("seed") is None:
        raise CliError(f"{label} has no recorded seed, so it cannot be reproduced.")
    options = dict(seed=params["seed"], steps=params.get("steps"),
                   true_cfg_scale=params.get("true_cfg_scale"),
                   negative_prompt=params.get("negative_prompt"),
                   width=params.get("width"), height=params.get("height"))
    if params.get("loras"):
        options["loras"] = _needed_loras(label, params["loras"])
    if node["kind"] == "generate":
        request = GenerateRequest(prompt=node["prompt"], **options)
        return _run_with_bar(backend.generate, request, label).image
    inputs = node.get("inputs") or []
    if not inputs:
        raise CliError(f"{label} records no input images, so it cannot be replayed.")
    missing = [f"#{n}" for n in inputs if n not in replayed]
    if missing:
        raise CliError(f"{label} needs {', '.join(missing)}, which the history does not hold "
                       "before it.")
    request = EditRequest(prompt=node["prompt"], images=tuple(replayed[n] for n in node["inputs"]),
                          **options)
    image = _run_with_bar(backend.edit, request, label).image
    # The drift guard and any painted region, as the chat applied them.
    recorded = params.get("request") or {}
    mask = masks.get(recorded.get("region")) if recorded.get("region") else None
    if recorded.get("region") and mask is None:
        raise CliError(f"{label} was edited in a painted region, masks/{recorded['region']}.png, "
                       "which the history does not hold.")
    return keep_untouched(replayed[node["inputs"][0]], image, recorded, mask)[0]


def _needed_loras(label: str, records: list) -> tuple:
    """The adapters a node was made with, checked against this machine's QEC_LORAS."""
    from pipelines.loras import file_sha256, parse_loras, resolve

    from .config import get_settings

    configured = {spec.name: spec for spec in parse_loras(get_settings().loras)}
    for rec in records:
        need = (f"LoRA {rec.get('name')!r} (sha256 {str(rec.get('sha256'))[:12]}…, from "
                f"{rec.get('source')}, file {rec.get('file')}) at scale {rec.get('scale')}")
        spec = configured.get(rec.get("name"))
        if spec is None:
            raise CliError(f"{label} needs the {need}: add it to QEC_LORAS and replay again.")
        try:
            found = file_sha256(resolve(spec))
        except (LookupError, ValueError, OSError) as e:
            raise CliError(f"{label} needs the {need}, which is not on this machine ({e}).") from None
        if found != rec.get("sha256"):
            raise CliError(f"{label} needs the {need}; QEC_LORAS names a different file (sha256 {found[:12]}…).")
    return tuple((rec["name"], rec.get("scale")) for rec in records)


def _replay_op(node: dict, params: dict, replayed: dict) -> Image.Image:
    label = f"#{node['number']} {node['kind']}"
    source = (node.get("inputs") or [None])[0]
    if source not in replayed:
        raise CliError(f"{label} needs #{source}, which the history does not hold before it.")
    try:
        return exact.apply(replayed[source], params.get("op") or {})
    except ValueError as e:
        raise CliError(f"{label}: {e}") from None


def _verdict(png: bytes, image: Image.Image, stored: bytes, node: dict) -> str:
    if hashlib.sha256(png).hexdigest() == node.get("sha256"):
        return "reproduced"
    import numpy as np

    recorded = _decode(stored, node["file"])
    if recorded.size != image.size:
        return f"differs (size {image.width}x{image.height}, recorded {recorded.width}x{recorded.height})"
    diff = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(recorded, dtype=np.int16))
    worst = int(diff.max())
    return "reproduced" if worst == 0 else f"differs (max abs difference {worst} of 255)"


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return pipelines.base.to_rgb(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise CliError(f"{name} in the history zip is not a readable image.") from exc


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    sys.exit(main())
