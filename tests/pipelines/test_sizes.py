"""Size planning: what the pipeline resizes to, what we generate, what comes back."""

from __future__ import annotations

import pytest

from pipelines import sizes


def test_pipeline_size_matches_diffusers_own_resize_rule():
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import (
        CONDITION_IMAGE_SIZE,
        VAE_IMAGE_SIZE,
        calculate_dimensions,
    )

    assert (sizes.VAE_AREA, sizes.CONDITION_AREA) == (VAE_IMAGE_SIZE, CONDITION_IMAGE_SIZE)
    for width in range(40, 4000, 97):
        for height in range(40, 4000, 89):
            if max(width, height) / min(width, height) > sizes.MAX_ASPECT:
                continue
            for area in (VAE_IMAGE_SIZE, CONDITION_IMAGE_SIZE, 256 * 256):
                assert sizes.pipeline_size(width, height, area) == calculate_dimensions(
                    area, width / height
                ), (width, height, area)


@pytest.mark.parametrize("size", [(1000, 667), (97, 1301), (1024, 768), (4000, 3000), (31, 33)])
def test_edit_without_a_size_returns_picture_1s_size_on_its_vae_grid(size):
    plan = sizes.plan_edit([size, (640, 480)])
    assert plan.output == size
    assert plan.generate == plan.vae[0]
    w, h = plan.generate
    assert w % 16 == 0 and h % 16 == 0
    assert all(s % 32 == 0 for vae in plan.vae for s in vae)
    assert 0.75 * sizes.VAE_AREA < w * h < 1.25 * sizes.VAE_AREA
    cw, ch = plan.condition[0]
    assert 0.75 * sizes.CONDITION_AREA < cw * ch < 1.25 * sizes.CONDITION_AREA
    # The generated grid keeps Picture 1's shape (within the 32 px rounding).
    assert abs(w / h - size[0] / size[1]) / (size[0] / size[1]) < 0.2
    assert len(plan.vae) == len(plan.condition) == 2


def test_edit_output_area_setting_picks_the_generation_size():
    plan = sizes.plan_edit([(1000, 667)], vae_area=256 * 256, output_area=512 * 512)
    w, h = plan.generate
    assert 0.8 * 512 * 512 < w * h < 1.2 * 512 * 512
    assert plan.output == (1000, 667)
    assert plan.vae[0][0] * plan.vae[0][1] < 1.15 * 256 * 256


def test_edit_with_width_and_height_returns_exactly_that():
    plan = sizes.plan_edit([(1000, 667)], 1000, 500)
    assert plan.output == (1000, 500)
    assert plan.generate == (992, 496)  # nearest multiples of 16 (ties to even)


def test_edit_with_one_side_keeps_picture_1s_aspect():
    plan = sizes.plan_edit([(1000, 500)], width=800)
    assert plan.output == (800, 400)
    plan = sizes.plan_edit([(1000, 500)], height=300)
    assert plan.output == (600, 300)


def test_requested_sizes_are_capped_by_max_output_area_but_returned_in_full():
    plan = sizes.plan_edit([(1000, 667)], 2048, 1024, max_output_area=256 * 256)
    assert plan.output == (2048, 1024)
    w, h = plan.generate
    assert w * h <= 1.1 * 256 * 256
    assert w / h == pytest.approx(2.0, rel=0.1)


def test_generate_defaults_to_the_model_card_size():
    plan = sizes.plan_generate()
    assert plan.output == plan.generate == (1328, 1328)
    plan = sizes.plan_generate(1664, 928)
    assert plan.output == plan.generate == (1664, 928)
    plan = sizes.plan_generate(width=1000, height=None)
    assert plan.output == (1000, 1000)
    assert plan.generate == (992, 992)


def test_generate_cap_keeps_the_aspect():
    plan = sizes.plan_generate(1664, 928, max_output_area=256 * 256)
    assert plan.output == (1664, 928)
    w, h = plan.generate
    assert w % 16 == 0 and h % 16 == 0 and w * h <= 1.1 * 256 * 256
    assert w / h == pytest.approx(1664 / 928, rel=0.1)


def test_absurd_aspect_ratios_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="too long and thin"):
        sizes.plan_edit([(20, 4000)])
    with pytest.raises(ValueError, match="too long and thin"):
        sizes.plan_generate(4096, 16)


def test_snap_never_goes_below_one_multiple():
    assert sizes.snap(3, 7) == (16, 16)
    assert sizes.fit_area(1, 100, 16 * 16) == (16, 160)
