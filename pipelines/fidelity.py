"""The drift guard: what an edit did not touch stays exactly as it was.

Owns undoing the model's drift on chained edits. Qwen-Image-Edit returns the whole
picture repainted: besides the asked change, the untouched parts come back shifted by
a few pixels, zoomed a little, softer and with a small colour cast, and over several
turns noise creeps in. ``guard(before, after)`` takes an edit's input (Picture 1, at
its own full size) and the model's output (any size) and returns the picture to keep:

1. geometry: the output is aligned to the input (sub-pixel shift and a slight zoom,
   per axis) at a working size of at most ``WORK_LONG_SIDE`` pixels: windowed phase
   correlation over zooms 0.95..1.05 for a start, then a robust Lucas-Kanade on a
   pyramid (zoom, shift, grey gain and offset; changed pixels weigh nothing). A move
   is kept only when it is plausible drift (a few percent at most), lines the two
   pictures up well, and explains them clearly better than no move.
2. colour: a per-channel gain and offset fitted robustly on the untouched pixels; a
   small one (``CAST_GAIN``, ``CAST_OFFSET``) is drift and is taken out of the output,
   a larger one is the edit (the edit is global).
3. change mask: the aligned output against the input with the cast put on it, both
   slightly blurred, with more tolerance on strong edges; hysteresis keeps small strong
   changes (a dot, thin text) and drops lone specks; faint but even changes are found
   in 8x8 block means. Grown by a margin and feathered.
4. composite at full size: where the mask is 0 the input is kept bit for bit; elsewhere
   the aligned, cast-corrected output, resampled once and only inside the mask's box.

A global edit (a large cast, or more than ``GLOBAL_FRACTION`` of the picture changed)
keeps the whole aligned output. A mixed edit, a tint plus a local object, follows the
tint: within drift's bounds it is taken for drift (the object is kept, in the input's
colours, the rest exactly); past them the whole output is the edit. A painted region
(``region=``) replaces the change detection; ``composite`` and ``feather_mask`` serve
painted regions directly.

Limits: rotation is not modelled (0.05 degree already shows as changes near the
corners); on a repeating pattern a drift of half its period or more cannot be told
from none; a deliberate global tint within drift's bounds (a gain of 6 %, an offset
of 8 levels) is taken for drift and removed; when more than about half the picture
changed, the move may not be found and the output is kept unaligned.

Pure image code: numpy and Pillow; it knows nothing of torch, the models or the chat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageFilter

Size = Tuple[int, int]

WORK_LONG_SIDE = 1024  # estimation and change detection happen at most at this size
COARSE_LONG_SIDE = 256  # the phase-correlation start
SCALES = np.linspace(0.95, 1.05, 7)  # zooms tried for the start
MAX_SHIFT = 0.03  # of the working size; larger is not drift
ACCEPT_COST = 0.85  # a move is kept only when it explains the pictures this much better
MATCH_QUALITY = 0.06  # ... and leaves residuals under this share of the picture's contrast
MAX_ZOOM = 0.055  # |scale - 1| beyond this is not drift
CAST_GAIN = 0.06  # per-channel |gain - 1| that is still drift
CAST_OFFSET = 8.0  # per-channel |offset| (8-bit levels) that is still drift
GLOBAL_FRACTION = 0.55  # a changed share above this makes the edit global
DIFF_FLOOR = 10.0  # weakest difference (8-bit levels, after blur) that counts as change
DIFF_CEIL = 24.0  # the adaptive threshold never goes past this
EDGE_TOLERANCE = 0.3  # extra tolerance per unit of local gradient (levels per px)
LINE_TOLERANCE = 0.3  # ... and per unit of local curvature (the Laplacian's size)
BLOCK = 8  # working pixels a side: faint changes are looked for in block means
BLOCK_LEVELS = 5.0  # a block whose mean colour moved more than this has changed
SUBTLE_PIXEL = 3.0  # ... and in it, the pixels that moved more than this


@dataclass(frozen=True)
class GuardResult:
    image: Image.Image  # final image, RGB, exactly before.size
    mask: Image.Image  # "L", before.size: 255 = from the aligned output, 0 = input kept
    changed: float  # mask mean / 255
    global_edit: bool  # the whole aligned output was kept
    shift: Tuple[float, float]  # (dx, dy) input pixels: how far the output had moved
    scale: float  # zoom of the output that was corrected (1.0 = none)

    def summary(self) -> dict:
        dx, dy = self.shift
        return {
            "changed": round(float(self.changed), 4),
            "global": bool(self.global_edit),
            "shift_px": round(math.hypot(dx, dy), 3),
            "dx": round(float(dx), 3),
            "dy": round(float(dy), 3),
            "scale": round(float(self.scale), 5),
        }


@dataclass(frozen=True)
class _Geometry:
    """Working pixel p of the input shows in the output at c + s * (p - c) + t."""

    sx: float = 1.0
    sy: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    def at_level(self, level: int) -> "_Geometry":
        f = 0.5**level
        return _Geometry(self.sx, self.sy, self.tx * f, self.ty * f)

    def from_level(self, level: int) -> "_Geometry":
        f = 2.0**level
        return _Geometry(self.sx, self.sy, self.tx * f, self.ty * f)

    def is_identity(self) -> bool:
        return self.sx == 1.0 and self.sy == 1.0 and self.tx == 0.0 and self.ty == 0.0


IDENTITY = _Geometry()


# ---------------------------------------------------------------------------- public


def guard(
    before: Image.Image, after: Image.Image, *, region: Optional[Image.Image] = None
) -> GuardResult:
    """The picture to keep after an edit of ``before`` that the model returned as ``after``."""
    before = _rgb(before)
    after = _rgb(after)
    W, H = before.size
    if region is None and after.size == before.size and _same(before, after):
        nothing = Image.new("L", before.size, 0)
        return GuardResult(before.copy(), nothing, 0.0, False, (0.0, 0.0), 1.0)

    ws = _work_size(before.size)
    # Larger outputs are brought down once, with antialiasing, so the final warp only
    # upsamples or keeps the scale.
    if after.width > W * 1.05 or after.height > H * 1.05:
        after = after.resize(before.size, Image.LANCZOS, reducing_gap=3.0)
    b_w = _resize(before, ws)
    a_w = _resize(after, ws)
    B = np.asarray(b_w)
    A = np.asarray(a_w)

    exclude = None  # working pixels the geometry and the cast must not be read from
    if region is not None:
        painted = np.asarray(_region_l(region).resize(ws, Image.BOX)) >= 128
        exclude = _dilate(painted, max(2, round(max(ws) * 0.01)))

    gB, gA = _grey(B), _grey(A)
    geo, pyramid = _estimate_geometry(gB, gA, exclude)
    # The output's outer 3 pixels (on its own grid) are not compared.
    border = 2.0 + 3.0 * max(ws[0] / after.width, ws[1] / after.height)
    valid = _valid(ws, geo, border)
    aligned = _warp_rgb(a_w, ws, geo, ws)
    cast = _fit_cast(b_w, aligned, valid if exclude is None else valid & ~exclude)
    small_cast = _small_cast(cast)

    if region is not None:
        mask_full = feather_mask(region, before.size)
        return _finish(before, after, ws, geo, mask_full, cast if small_cast else None, False)
    if not small_cast:
        return _finish(before, after, ws, geo, None, None, True)

    tol = _edge_tolerance(pyramid, gB)
    Ab = _blur_u8(aligned)
    core, share = _changes(_blur_u8(_cast_onto(B, cast)), Ab, valid, tol)
    if 0.08 < share < GLOBAL_FRACTION:
        # A large change can pull the first estimate: estimate again on what did not
        # change, then look again.
        grown = _dilate(core, _margin(ws))
        geo2, _ = _estimate_geometry(gB, gA, grown, start=geo, levels=1, pyramid=pyramid)
        if geo2 != geo:
            geo = geo2
            valid = _valid(ws, geo, border)
            aligned = _warp_rgb(a_w, ws, geo, ws)
            cast = _fit_cast(b_w, aligned, valid & ~grown)
            small_cast = _small_cast(cast)
            if not small_cast:
                return _finish(before, after, ws, geo, None, None, True)
            Ab = _blur_u8(aligned)
            core, share = _changes(_blur_u8(_cast_onto(B, cast)), Ab, valid, tol)
    if share >= GLOBAL_FRACTION:
        return _finish(before, after, ws, geo, None, None, True)
    # The strip along the edges that was not compared follows its neighbours, so an
    # edit that reaches the edge is taken up to it.
    core |= _dilate(core, int(math.ceil(border)) + 1) & ~valid
    mask_w = _feather_core(core, _margin(ws))
    if mask_w.getbbox() is None:
        return _finish(before, after, ws, geo, Image.new("L", before.size, 0), None, False)
    if np.asarray(mask_w).mean() / 255.0 >= GLOBAL_FRACTION:
        return _finish(before, after, ws, geo, None, None, True)
    return _finish(before, after, ws, geo, _upscale_mask(mask_w, before.size), cast, False)


def composite(before: Image.Image, after: Image.Image, mask: Image.Image) -> Image.Image:
    """``before`` where ``mask`` is 0 (bit for bit), ``after`` where it is 255, blended between.

    ``after`` and ``mask`` may be of any size: both are resized to ``before.size``,
    ``after`` only inside the mask's box. The result is RGB at ``before.size``.
    """
    before = _rgb(before)
    mask = _region_l(mask)
    if mask.size != before.size:
        mask = mask.resize(before.size, Image.BILINEAR)
    box = mask.getbbox()
    out = before.copy()
    if box is None:
        return out
    after = _rgb(after)
    if after.size != before.size:
        kx, ky = after.width / before.width, after.height / before.height
        patch = after.resize(
            (box[2] - box[0], box[3] - box[1]),
            Image.BICUBIC,
            box=(box[0] * kx, box[1] * ky, box[2] * kx, box[3] * ky),
        )
    else:
        patch = after.crop(box)
    out.paste(patch, box[:2], mask.crop(box))
    return out


def feather_mask(
    region: Image.Image, size: Size, *, feather_px: Optional[int] = None
) -> Image.Image:
    """A painted region (white = may change, any size and mode) as an "L" mask of ``size``.

    The region is scaled to ``size`` and binarised, grown outward by ``feather_px`` and
    feathered over that band, so the painted area itself is 255 and the input stays
    exact (0) from about ``2.5 * feather_px`` outside it (default: 0.4 % of the long
    side). Transparent pixels are unpainted.
    """
    W, H = size
    if feather_px is None:
        feather_px = max(2, round(max(W, H) * 0.004))
    feather_px = max(0, int(feather_px))
    # A box filter: a pixel is painted when most of what it covers is (when enlarging,
    # the painted pixel it lies in), so a painted corner stays painted.
    painted = _region_l(region).resize(size, Image.BOX)
    box = painted.point(lambda v: 255 if v >= 128 else 0).getbbox()
    if box is None:
        return Image.new("L", size, 0)
    pad = 3 * feather_px + 2
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(W, box[2] + pad), min(H, box[3] + pad)
    core = np.asarray(painted.crop((x0, y0, x1, y1))) >= 128
    if feather_px:
        grown = _dilate(core, feather_px)
        soft = Image.fromarray(grown.astype(np.uint8) * 255).filter(
            ImageFilter.GaussianBlur(feather_px / 2.0)
        )
        crop = np.maximum(np.asarray(soft), core.astype(np.uint8) * 255)
    else:
        crop = core.astype(np.uint8) * 255
    out = Image.new("L", size, 0)
    out.paste(Image.fromarray(crop.astype(np.uint8), "L"), (x0, y0))
    return out


# ------------------------------------------------------------------------- finishing


def _finish(before, after, ws, geo, mask_full, cast, global_edit) -> GuardResult:
    W, H = before.size
    kx, ky = ws[0] / W, ws[1] / H
    shift = (float(geo.tx / kx), float(geo.ty / ky))
    scale = float(math.sqrt(geo.sx * geo.sy))
    if global_edit:
        image = _warp_full(after, before.size, ws, geo, (0, 0, W, H))
        mask = Image.new("L", before.size, 255)
        return GuardResult(image, mask, 1.0, True, shift, scale)
    box = mask_full.getbbox()
    if box is None:
        return GuardResult(before.copy(), mask_full, 0.0, False, shift, scale)
    patch = _warp_full(after, before.size, ws, geo, box)
    if cast is not None:
        patch = patch.point(_cast_lut(cast))
    image = before.copy()
    image.paste(patch, box[:2], mask_full.crop(box))
    changed = float(np.asarray(mask_full.crop(box), dtype=np.float64).sum()) / (255.0 * W * H)
    return GuardResult(image, mask_full, changed, False, shift, scale)


def _warp_full(after: Image.Image, size: Size, ws: Size, geo: _Geometry, box) -> Image.Image:
    """The aligned output over ``box`` of the input's full-size grid (one resampling)."""
    W, H = size
    aw, ah = after.size
    kx, ky = ws[0] / W, ws[1] / H
    rx, ry = aw / ws[0], ah / ws[1]
    cx, cy = ws[0] / 2.0, ws[1] / 2.0
    ax = rx * geo.sx * kx
    ay = ry * geo.sy * ky
    bx = rx * (cx * (1 - geo.sx) + geo.tx)
    by = ry * (cy * (1 - geo.sy) + geo.ty)
    x0, y0, x1, y1 = box
    # Only the part of the output the box needs is padded and resampled.
    sx0 = max(0, int(math.floor(ax * x0 + bx)) - 4)
    sy0 = max(0, int(math.floor(ay * y0 + by)) - 4)
    sx1 = min(aw, int(math.ceil(ax * x1 + bx)) + 4)
    sy1 = min(ah, int(math.ceil(ay * y1 + by)) + 4)
    if sx1 <= sx0 or sy1 <= sy0:  # the box lies wholly outside the output: its edge
        sx0, sy0 = min(max(sx0, 0), aw - 1), min(max(sy0, 0), ah - 1)
        sx1, sy1 = sx0 + 1, sy0 + 1
    src = after.crop((sx0, sy0, sx1, sy1))
    size = (x1 - x0, y1 - y0)
    return _affine(src, size, ax, ax * x0 + bx - sx0, ay, ay * y0 + by - sy0, Image.LANCZOS)


def _affine(src, size: Size, ax: float, bx: float, ay: float, by: float, resample=Image.BICUBIC):
    """``src`` (an image or a float array) read at (ax x + bx, ay y + by) for each
    pixel (x, y) of ``size`` (continuous coordinates), outside it the edge repeated.

    Pillow's ``resize`` with a box does this with proper convolution (and antialiasing
    when shrinking); ``transform``'s bicubic is off by up to 0.1 px for sub-pixel moves.
    """
    w, h = size
    box = [bx, by, ax * w + bx, ay * h + by]
    if isinstance(src, np.ndarray):
        arr, as_array = src, True
    else:
        arr, as_array = np.asarray(src), False
    sh, sw = arr.shape[:2]
    padx = int(math.ceil(max(0.0, -min(box[0], box[2]), max(box[0], box[2]) - sw))) + 3
    pady = int(math.ceil(max(0.0, -min(box[1], box[3]), max(box[1], box[3]) - sh))) + 3
    pads = ((pady, pady), (padx, padx)) + (((0, 0),) if arr.ndim == 3 else ())
    img = Image.fromarray(np.pad(arr, pads, mode="edge"))
    padded_box = (box[0] + padx, box[1] + pady, box[2] + padx, box[3] + pady)
    out = img.resize(size, resample, box=padded_box)
    return np.asarray(out) if as_array else out


def _upscale_mask(mask_w: Image.Image, size: Size) -> Image.Image:
    """The working mask at full size; only its box is resampled, the rest is 0."""
    W, H = size
    w, h = mask_w.size
    if (w, h) == (W, H):
        return mask_w
    kx, ky = w / W, h / H
    bx0, by0, bx1, by1 = mask_w.getbbox()
    x0 = max(0, int(math.floor(bx0 / kx)) - 2)
    y0 = max(0, int(math.floor(by0 / ky)) - 2)
    x1 = min(W, int(math.ceil(bx1 / kx)) + 2)
    y1 = min(H, int(math.ceil(by1 / ky)) + 2)
    box = (x0 * kx, y0 * ky, x1 * kx, y1 * ky)
    patch = mask_w.resize((x1 - x0, y1 - y0), Image.BILINEAR, box=box)
    out = Image.new("L", size, 0)
    out.paste(patch, (x0, y0))
    return out


# -------------------------------------------------------------------------- geometry


def _estimate_geometry(
    I0: np.ndarray,
    J0: np.ndarray,
    exclude: Optional[np.ndarray],
    *,
    start: Optional[_Geometry] = None,
    levels: Optional[int] = None,
    pyramid: Optional[list] = None,
) -> Tuple[_Geometry, list]:
    """How the output ``J0`` is moved and zoomed against the input ``I0`` (working greys).

    Returns the geometry and the pyramid, which a second call can reuse.
    """
    h0, w0 = I0.shape
    if min(h0, w0) < 24:
        return IDENTITY, []
    if pyramid is None:
        pairs = [(_smooth(I0), _smooth(J0))]
        while max(pairs[-1][0].shape) > COARSE_LONG_SIDE * 1.5 and min(pairs[-1][0].shape) >= 48:
            pairs.append((_down2(pairs[-1][0]), _down2(pairs[-1][1])))
        pyramid = [(I, J, *_gradients(I), *_gradients(J)) for I, J in pairs]
    excl = [exclude]
    for _ in range(1, len(pyramid)):
        excl.append(None if excl[-1] is None else _down2_mask(excl[-1]))
    c0 = (w0 / 2.0, h0 / 2.0)
    top = len(pyramid) - 1
    if start is None:
        I, J = pyramid[top][:2]
        coarse = _coarse(I, J, (c0[0] / 2**top, c0[1] / 2**top)).from_level(top)
        geo, cost = _refine(pyramid, excl, coarse, top, c0)
        if _far(coarse, w0, h0):
            # Far from no move: on a repeating pattern the correlation can pick a
            # neighbouring repeat. Also start from no move (at a level where fine
            # repeats are still seen); on a near tie, the smaller move wins (drift is
            # a few pixels).
            geo_id, cost_id0 = _refine(pyramid, excl, IDENTITY, min(1, top), c0)
            if geo_id is not None and (geo is None or cost_id0 <= 1.1 * cost):
                geo, cost = geo_id, cost_id0
        fallback = IDENTITY
    else:
        first = 0 if levels is None else levels - 1
        geo, cost = _refine(pyramid, excl, start, first, c0)
        fallback = start
    if geo is None:
        return fallback, pyramid
    # Keep the estimate only when it is plausible drift and explains the pictures better.
    if abs(geo.sx - 1) > MAX_ZOOM or abs(geo.sy - 1) > MAX_ZOOM:
        return fallback, pyramid
    if abs(geo.tx) > MAX_SHIFT * w0 or abs(geo.ty) > MAX_SHIFT * h0:
        return fallback, pyramid
    _, cost_id, _ = _lk(pyramid[0], IDENTITY, c0, excl[0], 0)
    if cost is None or (cost_id is not None and cost > ACCEPT_COST * cost_id):
        return fallback, pyramid
    # ... and when what it lines up is a match at all: a mirrored or repainted picture
    # lines up nowhere, and a better-than-nothing fit of it is no drift.
    sample = pyramid[0][0][::4, ::4]
    spread = float(np.percentile(sample, 90) - np.percentile(sample, 10))
    if cost > MATCH_QUALITY * max(spread, 1.0):
        return fallback, pyramid
    corner = max(abs(geo.sx - 1) * w0, abs(geo.sy - 1) * h0) / 2
    if abs(geo.tx) < 0.005 and abs(geo.ty) < 0.005 and corner < 0.005:
        return IDENTITY, pyramid
    return geo, pyramid


def _refine(pyramid, excl, geo: _Geometry, first: int, c0):
    """Lucas-Kanade from level ``first`` down to the working size: (geometry, cost),
    or (None, None) when it fails."""
    cost, photo = None, None
    for lv in range(first, -1, -1):
        f = 2**lv
        c = (c0[0] / f, c0[1] / f)
        iters = 10 if lv else 8
        g, cost, photo = _lk(pyramid[lv], geo.at_level(lv), c, excl[lv], iters, lv == 0, photo)
        if g is None:
            return None, None
        geo = g.from_level(lv)
    return geo, cost


def _far(geo: _Geometry, w: int, h: int) -> bool:
    """A move of more than 4 working pixels anywhere in the picture."""
    corner = max(abs(geo.sx - 1) * w, abs(geo.sy - 1) * h) / 2
    return math.hypot(geo.tx, geo.ty) + corner > 4.0


def _coarse(I: np.ndarray, J: np.ndarray, c) -> _Geometry:
    """A start: the zoom whose phase correlation peaks highest, and its shift."""
    h, w = I.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fi = np.fft.rfft2((I - I.mean()) * win)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    lowpass = np.exp(-(fx**2 + fy**2) / (2 * 0.18**2))  # smooths the peak for the fit
    max_shift = (int(MAX_SHIFT * w) + 1, int(MAX_SHIFT * h) + 1)
    peaks = []
    for s in SCALES:
        Jw = _warp_f(J, (w, h), _Geometry(s, s, 0.0, 0.0), c)
        peaks.append(_phase(fi, Jw, win, lowpass, max_shift))
    heights = np.array([p[2] for p in peaks])
    k = int(np.argmax(heights))
    s = float(SCALES[k])
    if 0 < k < len(SCALES) - 1:
        s += _parabola(heights[k - 1], heights[k], heights[k + 1]) * float(SCALES[1] - SCALES[0])
    Jw = _warp_f(J, (w, h), _Geometry(s, s, 0.0, 0.0), c)
    dx, dy, _ = _phase(fi, Jw, win, lowpass, max_shift)
    # Jw(p) = J(c + s (p - c)) shows I(p - t / s): a shift of t / s.
    return _Geometry(s, s, dx * s, dy * s)


def _phase(fi, b, win, lowpass, max_shift):
    """Windowed phase correlation: how far ``b`` is moved against the first picture."""
    h, w = b.shape
    fb = np.fft.rfft2((b - b.mean()) * win)
    r = fb * np.conj(fi)
    r /= np.abs(r) + 1e-9
    corr = np.fft.irfft2(r * lowpass, s=(h, w))
    mx, my = max_shift
    ys = np.r_[0 : my + 1, h - my : h]
    xs = np.r_[0 : mx + 1, w - mx : w]
    sub = corr[np.ix_(ys, xs)]
    iy, ix = np.unravel_index(int(np.argmax(sub)), sub.shape)
    py, px = int(ys[iy]), int(xs[ix])
    dy = _parabola(corr[(py - 1) % h, px], corr[py, px], corr[(py + 1) % h, px])
    dx = _parabola(corr[py, (px - 1) % w], corr[py, px], corr[py, (px + 1) % w])
    sy = py if py <= h // 2 else py - h
    sx = px if px <= w // 2 else px - w
    return sx + dx, sy + dy, float(corr[py, px])


def _parabola(a, b, c) -> float:
    d = a - 2 * b + c
    if d >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))


LK_POINTS = (24_000, 10_000)  # samples at the working size, at the coarser levels
# The residuals' spread is read from a low quantile, so a change covering more than
# half of the picture is still rejected as outliers (for a normal law, the 25th
# percentile of |r| is 0.3186 sigma).
SIGMA_QUANTILE, SIGMA_NORM = 0.25, 0.3186


def _lk(level, geo: _Geometry, c, exclude, iters: int, fine: bool = True, photo=None):
    """Robust Lucas-Kanade on zoom (per axis), shift, and a grey gain and offset.

    Works on a grid of at most ``LK_POINTS`` samples of the input (more at the working
    size, where the result is decided, than at the coarse levels); the output and its
    gradients are read at the moved places (values bicubic, gradients bilinear: the
    values decide where it settles, the gradients only how fast it gets there). The
    cost is the median absolute residual on the textured samples; with
    ``iters`` 0 it only measures ``geo``. The grey gain and offset come in and go out
    as ``photo`` (None: matched spreads). (None, None, None) when nothing fits.
    Returns (geometry, cost, photo).
    """
    I, J, gIx, gIy, gJx, gJy = level
    h, w = I.shape
    cx, cy = c
    points = LK_POINTS[0] if fine else LK_POINTS[1]
    stride = max(1, int(math.ceil(math.sqrt(h * w / points))))
    # Not the outer pixels: there the blur and the model's own border (a zoomed-out
    # output has none of the input's edge) are not the picture.
    edge = 4
    iy = np.arange(edge + stride // 2, h - edge, stride)
    ix = np.arange(edge + stride // 2, w - edge, stride)
    X = (ix + 0.5 - cx)[None, :]
    Y = (iy + 0.5 - cy)[:, None]
    pick = np.ix_(iy, ix)
    keep = np.ones((len(iy), len(ix)), bool) if exclude is None else ~exclude[pick]
    Is, gIx, gIy = I[pick], gIx[pick], gIy[pick]
    X = np.broadcast_to(X, Is.shape)[keep]
    Y = np.broadcast_to(Y, Is.shape)[keep]
    Is, gIx, gIy = Is[keep], gIx[keep], gIy[keep]
    if Is.size < 200:
        return None, None, None
    # Residuals are judged on the samples that carry geometry (edges, texture): on a
    # mostly flat picture the flat ones would make every edge look like an outlier.
    gm = np.hypot(gIx, gIy)
    inform = gm >= max(0.5, float(np.percentile(gm, 50)))
    Xn, Yn = X / cx, Y / cy
    sx, sy, tx, ty = geo.sx, geo.sy, geo.tx, geo.ty
    gain, offset = 1.0, 0.0
    cost = None
    for it in range(iters + 1):
        qx = cx + sx * X + tx
        qy = cy + sy * Y + ty
        valid = (qx > 2) & (qx < w - 2) & (qy > 2) & (qy < h - 2)
        if valid.sum() < 200:
            return None, None, None
        Jx, Jy = _bilinear((gJx, gJy), qx, qy)
        Js = _bicubic(J, qx, qy)
        if it == 0:
            if photo is not None:
                gain, offset = photo
            else:
                # Matched spreads, not a regression: a start a pixel or two off
                # would flatten a regression's gain on fine detail.
                pi = np.percentile(Is[valid], (10, 50, 90))
                pj = np.percentile(Js[valid], (10, 50, 90))
                gain = float(np.clip((pj[2] - pj[0]) / max(pi[2] - pi[0], 1e-3), 0.3, 3.0))
                offset = float(pj[1] - gain * pi[1])
        r = Js - (gain * Is + offset)
        rv = r[valid & inform]
        if rv.size < 50:
            return None, None, None
        if it == iters:
            cost = float(np.median(np.abs(rv)))
            break
        sub = rv[:: max(1, rv.size // 5000)]
        dev = np.abs(sub - np.median(sub))
        # The first steps use the median, which still sees edges when the start is
        # a pixel or two off; the later ones the low quantile.
        quantile, norm = (0.5, 0.6745) if it < 3 else (SIGMA_QUANTILE, SIGMA_NORM)
        sigma = max(float(np.percentile(dev, quantile * 100)) / norm, 0.5)
        wt = np.clip(1.0 - (r / (4.685 * sigma)) ** 2, 0.0, None) ** 2 * (valid & inform)
        Gx = 0.5 * (Jx + gain * gIx)
        Gy = 0.5 * (Jy + gain * gIy)
        cols = np.stack([Gx * Xn, Gy * Yn, Gx, Gy, -Is / 128.0, -np.ones_like(Is)], axis=1)
        cols = cols.astype(np.float64)
        Aw = cols * wt[:, None]
        M = cols.T @ Aw
        v = Aw.T @ r.astype(np.float64)
        M += np.eye(6) * (1e-6 * np.trace(M) / 6 + 1e-9)
        try:
            d = -np.linalg.solve(M, v)
        except np.linalg.LinAlgError:
            return None, None, None
        d[:4] = np.clip(d[:4], -3.0, 3.0)
        sx += d[0] / cx
        sy += d[1] / cy
        tx += d[2]
        ty += d[3]
        gain += d[4] / 128.0
        offset += d[5]
        if abs(sx - 1) > 0.15 or abs(sy - 1) > 0.15 or abs(tx) > 0.25 * w or abs(ty) > 0.25 * h:
            return None, None, None
        if not 0.25 < gain < 4.0:  # an inverted or flattened picture is no match
            return None, None, None
        if np.all(np.abs(d[:4]) < 0.002):
            iters = it + 1  # one more pass measures the cost at the final geometry
    return _Geometry(float(sx), float(sy), float(tx), float(ty)), cost, (gain, offset)


def _bicubic(a, qx, qy):
    """``a`` read at continuous places with Keys' cubic (a = -0.5), edges clamped."""
    h, w = a.shape
    x = qx - 0.5
    y = qy - 0.5
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    wx = _keys(x - x0)
    wy = _keys(y - y0)
    f = a.ravel()
    out = np.zeros(x.shape, np.float32)
    cols = [np.clip(x0 + k, 0, w - 1) for k in (-1, 0, 1, 2)]
    for j, dy in enumerate((-1, 0, 1, 2)):
        row = np.clip(y0 + dy, 0, h - 1) * w
        acc = f[row + cols[0]] * wx[0]
        for i in (1, 2, 3):
            acc += f[row + cols[i]] * wx[i]
        out += acc * wy[j]
    return out


def _keys(t):
    t = t.astype(np.float32)
    t1, t2 = t + 1, 1 - t
    return (
        ((-0.5 * t1 + 2.5) * t1 - 4) * t1 + 2,
        (1.5 * t - 2.5) * t * t + 1,
        (1.5 * t2 - 2.5) * t2 * t2 + 1,
        ((-0.5 * (2 - t) + 2.5) * (2 - t) - 4) * (2 - t) + 2,
    )


def _bilinear(arrays, qx, qy):
    """Each of ``arrays`` (same shape) read at continuous places (centres at i + 0.5)."""
    h, w = arrays[0].shape
    x = qx - 0.5
    y = qy - 0.5
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 2)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    i00 = y0 * w + x0
    out = []
    for a in arrays:
        f = a.ravel()
        top = f[i00] * (1 - fx) + f[i00 + 1] * fx
        bot = f[i00 + w] * (1 - fx) + f[i00 + w + 1] * fx
        out.append(top * (1 - fy) + bot * fy)
    return out


def _valid(ws: Size, geo: _Geometry, border: float = 1.0) -> np.ndarray:
    """Working pixels whose place in the output lies inside it, ``border`` px or more
    from its edges: the output's outer pixels are where a moved picture has nothing of
    the input (filled, repeated or made up) and where resampling reads past the edge."""
    w, h = ws
    cx, cy = w / 2.0, h / 2.0
    qx = cx + geo.sx * (np.arange(w) + 0.5 - cx) + geo.tx
    qy = cy + geo.sy * (np.arange(h) + 0.5 - cy) + geo.ty
    inside_y = (qy > border) & (qy < h - border)
    inside_x = (qx > border) & (qx < w - border)
    return inside_y[:, None] & inside_x[None, :]


# ---------------------------------------------------------------- colour and change


def _fit_cast(before: Image.Image, after: Image.Image, keep: np.ndarray) -> np.ndarray:
    """Per channel (gain, offset) with output = gain * input + offset, fitted robustly
    on the ``keep`` pixels of two same-size working pictures.

    Fitted on 8x8 block means: softening lowers the contrast of fine detail pixel by
    pixel, which a fit on pixels would read as a gain below 1; block means keep it.
    """
    h, w = keep.shape
    hb, wb = h // BLOCK, w // BLOCK
    if hb * wb >= 200:
        k = keep[: hb * BLOCK, : wb * BLOCK].reshape(hb, BLOCK, wb, BLOCK).all(axis=(1, 3))
        xs = np.asarray(before.reduce(BLOCK), np.float32)[:hb, :wb][k]
        ys = np.asarray(after.reduce(BLOCK), np.float32)[:hb, :wb][k]
    else:
        xs = np.asarray(before, np.float32)[keep]
        ys = np.asarray(after, np.float32)[keep]
    out = np.zeros((3, 2))
    for ch in range(3):
        if xs.shape[0] < 50:
            out[ch] = (1.0, 0.0)
            continue
        out[ch] = _fit_line(xs[:, ch], ys[:, ch])
    return out


def _fit_line(x: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    """Robust y = g x + o (Tukey-weighted least squares, gain pulled gently to 1)."""
    step = max(1, x.size // 8000)
    x = x[::step].astype(np.float64)
    y = y[::step].astype(np.float64)
    g, o = 1.0, float(np.median(y - x))
    for _ in range(4):
        r = y - (g * x + o)
        sigma = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 0.75)
        wt = np.clip(1.0 - (r / (4.685 * sigma)) ** 2, 0.0, None) ** 2
        sw = wt.sum()
        if sw <= 0:
            break
        mx = (wt * x).sum() / sw
        my = (wt * y).sum() / sw
        sxx = (wt * (x - mx) ** 2).sum()
        sxy = (wt * (x - mx) * (y - my)).sum()
        lam = 1e-3 * sw * 255.0  # weak pull to gain 1 when the range is narrow
        g = (sxy + lam) / (sxx + lam)
        o = my - g * mx
    return float(g), float(o)


def _small_cast(cast: np.ndarray) -> bool:
    gains, offsets = cast[:, 0], cast[:, 1]
    return bool(np.all(np.abs(gains - 1) <= CAST_GAIN) and np.all(np.abs(offsets) <= CAST_OFFSET))


def _cast_lut(cast: np.ndarray) -> list:
    """A point table that undoes the cast (output levels back to input levels)."""
    v = np.arange(256, dtype=np.float64)
    lut = []
    for g, o in cast:
        lut.extend(np.clip(np.rint((v - o) / g), 0, 255).astype(int).tolist())
    return lut


def _cast_onto(a: np.ndarray, cast: np.ndarray) -> np.ndarray:
    """The input as the output's cast shows it, clipped the same way (so a highlight
    the cast pushed past 255 still matches)."""
    v = np.arange(256, dtype=np.float64)
    lut = []
    for g, o in cast:
        lut.extend(np.clip(np.rint(g * v + o), 0, 255).astype(int).tolist())
    return np.asarray(Image.fromarray(a).point(lut))


def _edge_tolerance(pyramid: list, grey: np.ndarray) -> np.ndarray:
    """How much difference edges and fine lines may show from resampling and the
    model's softening alone (8-bit levels): a share of the local slope (an edge a
    fraction of a pixel off) and of the local curvature (a thin line made softer).
    Read off the smoothed input at the pyramid's base when there is one."""
    if pyramid:
        g, _, gx, gy = pyramid[0][:4]
    else:
        g = _smooth(grey)
        gx, gy = _gradients(g)
    lap = np.zeros_like(g)
    lap[1:-1, 1:-1] = g[2:, 1:-1] + g[:-2, 1:-1] + g[1:-1, 2:] + g[1:-1, :-2] - 4 * g[1:-1, 1:-1]
    tol = EDGE_TOLERANCE * np.sqrt(gx * gx + gy * gy) + LINE_TOLERANCE * np.abs(lap)
    return tol.astype(np.float32)


def _changes(Bb: np.ndarray, Ab: np.ndarray, valid: np.ndarray, tol: np.ndarray):
    """The changed working pixels (no margin yet) and the share of the picture changed."""
    D = np.abs(Ab.astype(np.int16) - Bb.astype(np.int16)).max(axis=2).astype(np.float32)
    D[~valid] = 0
    D -= tol
    step = max(1, int(math.sqrt(D.size / 50_000)))
    dv = D[::step, ::step][valid[::step, ::step]]
    med = float(np.median(dv)) if dv.size else 0.0
    low = float(np.clip(3.0 * max(med, 0.0), DIFF_FLOOR, DIFF_CEIL))
    weak = D > low
    strong = D > 2.0 * low
    # A seed has company: at least 3 strong pixels in its 3x3 neighbourhood.
    seeds = strong & (_box3_count(strong) >= 3)
    # A global edit shows as most of the picture clearly different, seeded or not.
    broad = float(weak[valid].mean()) if valid.any() else 0.0
    core = np.zeros_like(seeds)
    box = _bbox(seeds)
    if box is not None:
        # Weak changes joined to a seed (hysteresis), up to 48 px away.
        reach = 48
        h, w = seeds.shape
        y0, x0 = max(0, box[0] - reach), max(0, box[1] - reach)
        y1, x1 = min(h, box[2] + reach), min(w, box[3] + reach)
        cur = seeds[y0:y1, x0:x1]
        wk = weak[y0:y1, x0:x1]
        for _ in range(reach // 2):
            nxt = (_dilate(cur, 2) & wk) | cur
            if np.array_equal(nxt, cur):
                break
            cur = nxt
        core[y0:y1, x0:x1] = cur
    # Faint changes: where blocks moved, the pixels that moved at all.
    core |= _subtle_changes(Ab, Bb, valid) & (D > SUBTLE_PIXEL)
    return core, max(float(core.mean()), broad)


def _subtle_changes(Ab: np.ndarray, Bb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Faint but even changes (a patch made a little lighter, a little bluer).

    Per-pixel differences of a few levels drown in noise; their mean over 8x8 blocks
    does not, while noise, texture and the leftover softness at edges (which changes
    sign across an edge) average out. Blocks (on a 4 px grid) whose mean colour moved
    by more than ``BLOCK_LEVELS``, three or more together, are changed.
    """
    h, w = valid.shape
    q = BLOCK // 2
    hq, wq = h // q, w // q
    if hq < 4 or wq < 4:
        return np.zeros_like(valid)
    # Quarter-block means (Pillow's box reduce), and which quarters hold invalid pixels.
    qa = np.asarray(Image.fromarray(Ab).reduce(q), np.float32)[:hq, :wq]
    qb = np.asarray(Image.fromarray(Bb).reduce(q), np.float32)[:hq, :wq]
    diff = qa - qb
    bad = (~valid[: hq * q, : wq * q]).reshape(hq, q, wq, q).any(axis=(1, 3))
    # 8x8 blocks every 4 px: means of 2x2 quarter blocks.
    means = (diff[:-1, :-1] + diff[1:, :-1] + diff[:-1, 1:] + diff[1:, 1:]) * 0.25
    ok = ~(bad[:-1, :-1] | bad[1:, :-1] | bad[:-1, 1:] | bad[1:, 1:])
    if not ok.any():
        return np.zeros_like(valid)
    D = np.abs(means).max(axis=2)
    level = max(BLOCK_LEVELS, 4.0 * float(np.median(D[ok])))
    flag = (D > level) & ok
    flag &= _box3_count(flag) >= 3
    if not flag.any():
        return np.zeros_like(valid)
    quarter = np.zeros((hq, wq), bool)
    quarter[:-1, :-1] |= flag
    quarter[1:, :-1] |= flag
    quarter[:-1, 1:] |= flag
    quarter[1:, 1:] |= flag
    up = np.repeat(np.repeat(quarter, q, axis=0), q, axis=1)
    return np.pad(up, ((0, h - hq * q), (0, w - wq * q)), mode="edge")


def _bbox(m: np.ndarray):
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _margin(ws: Size) -> int:
    return max(4, round(max(ws) * 0.006))


def _feather_core(core: np.ndarray, margin: int) -> Image.Image:
    """The changed pixels grown by ``margin`` and feathered outward (working size)."""
    out = np.zeros(core.shape, np.uint8)
    box = _bbox(core)
    if box is None:
        return Image.fromarray(out, "L")
    h, w = core.shape
    pad = 2 * margin + 4
    y0, x0 = max(0, box[0] - pad), max(0, box[1] - pad)
    y1, x1 = min(h, box[2] + pad), min(w, box[3] + pad)
    part = core[y0:y1, x0:x1]
    soft = Image.fromarray(_dilate(part, margin).astype(np.uint8) * 255)
    soft = soft.filter(ImageFilter.GaussianBlur(margin / 3.0))
    hard = _dilate(part, 1).astype(np.uint8) * 255
    out[y0:y1, x0:x1] = np.maximum(np.asarray(soft), hard)
    return Image.fromarray(out, "L")


# ------------------------------------------------------------------------- utilities


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(rgba, (0, 0), rgba)
        return bg
    return img.convert("RGB")


def _region_l(region: Image.Image) -> Image.Image:
    """A painted mask as "L": white is painted, transparent is not."""
    if region.mode == "L":
        return region
    if _has_alpha(region):
        rgba = region.convert("RGBA")
        lum = np.asarray(rgba.convert("L"), dtype=np.uint16)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint16)
        return Image.fromarray(((lum * alpha + 127) // 255).astype(np.uint8), "L")
    return region.convert("L")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _same(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a, b).getbbox() is None


def _work_size(size: Size) -> Size:
    W, H = size
    k = min(1.0, WORK_LONG_SIDE / max(W, H))
    return max(1, round(W * k)), max(1, round(H * k))


def _resize(img: Image.Image, size: Size) -> Image.Image:
    if img.size == size:
        return img
    if img.width >= 2 * size[0]:  # a large upload: a box filter is as good and faster
        return img.resize(size, Image.BOX)
    return img.resize(size, Image.BILINEAR)  # antialiased all the same (Pillow scales it)


def _grey(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def _smooth(a: np.ndarray) -> np.ndarray:
    """Binomial blur (sigma 1), edges replicated."""
    p = np.pad(a, 2, mode="edge")
    x = (p[:, :-4] + 4 * p[:, 1:-3] + 6 * p[:, 2:-2] + 4 * p[:, 3:-1] + p[:, 4:]) * (1 / 16)
    return (x[:-4] + 4 * x[1:-3] + 6 * x[2:-2] + 4 * x[3:-1] + x[4:]) * (1 / 16)


def _down2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2, a.shape[1] // 2
    a = a[: 2 * h, : 2 * w]
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) * np.float32(0.25)


def _down2_mask(m: np.ndarray) -> np.ndarray:
    h, w = m.shape[0] // 2, m.shape[1] // 2
    return m[: 2 * h, : 2 * w].reshape(h, 2, w, 2).any(axis=(1, 3))


def _gradients(a: np.ndarray):
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    gx[:, 1:-1] = (a[:, 2:] - a[:, :-2]) * 0.5
    gy[1:-1] = (a[2:] - a[:-2]) * 0.5
    return gx, gy


def _warp_f(a: np.ndarray, size: Size, geo: _Geometry, c) -> np.ndarray:
    """Samples ``a`` at c + s (p - c) + t for each pixel p of a ``size`` grid."""
    cx, cy = c
    return _affine(
        np.ascontiguousarray(a, dtype=np.float32),
        size,
        geo.sx,
        cx * (1 - geo.sx) + geo.tx,
        geo.sy,
        cy * (1 - geo.sy) + geo.ty,
    )


def _warp_rgb(img: Image.Image, size: Size, geo: _Geometry, ws: Size) -> Image.Image:
    if geo.is_identity() and img.size == size:
        return img
    cx, cy = ws[0] / 2.0, ws[1] / 2.0
    bx = cx * (1 - geo.sx) + geo.tx
    by = cy * (1 - geo.sy) + geo.ty
    return _affine(img, size, geo.sx, bx, geo.sy, by)


def _blur_u8(img) -> np.ndarray:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    return np.asarray(img.filter(_BINOMIAL3))


_BINOMIAL3 = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 4, 2, 1, 2, 1], 16)


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1) square."""
    if r <= 0:
        return m.copy()
    a = m.copy()
    for k in range(1, r + 1):
        a[:, k:] |= m[:, :-k]
        a[:, :-k] |= m[:, k:]
    b = a.copy()
    for k in range(1, r + 1):
        b[k:] |= a[:-k]
        b[:-k] |= a[k:]
    return b


def _box3_count(m: np.ndarray) -> np.ndarray:
    p = np.pad(m.astype(np.uint8), 1)
    h, w = m.shape
    out = np.zeros((h, w), np.uint8)
    for dy in range(3):
        for dx in range(3):
            out += p[dy : dy + h, dx : dx + w]
    return out
