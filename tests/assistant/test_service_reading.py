"""What the service does with how a message was read: attached photos as the picture
or as references (and the button that flips it), places like "the original", two
requests in one message, the question asked when a message could be either, /sample."""

from __future__ import annotations

from assistant.router import Intent

from .test_service import png, say, world  # noqa: F401  (world is a fixture)


def _fox_then(service, store, conv):
    """#1 generated, the current image."""
    say(service, conv, "a red fox in snow")
    assert store.head(conv).number == 1


def test_a_photo_with_plain_words_is_the_picture_to_edit(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    _fox_then(service, store, conv)
    out, [res] = say(service, conv, "make the background darker and add rain", files=[("portrait.png", png("blue"))])
    assert res.node.parent_number == 2 and res.node.input_numbers == [2]  # the portrait, no reference
    run = out.runs[0]
    assert run.note == "Edited your new photo (#2)."
    assert run.switch["label"] == "Use it as a reference for #1 instead"
    assert res.node.params["request"]["reading"] == "subject"
    assert store.head(conv).number == res.node.number


def test_words_that_point_at_the_photo_make_it_a_reference(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    _fox_then(service, store, conv)
    out, [res] = say(service, conv, "put the hat from this picture on the person", files=[("hat.png", png("green"))])
    assert res.node.parent_number == 1 and res.node.input_numbers == [1, 2]
    assert out.runs[0].note == "Edited #1 using your photo #2 as a reference."
    assert out.runs[0].switch["role"] == "subject"


def test_the_switch_button_reruns_the_other_reading_and_keeps_both(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    _fox_then(service, store, conv)
    out, [first] = say(service, conv, "make it night", files=[("p.png", png("blue"))])
    switch = {k: v for k, v in out.runs[0].switch.items() if k != "label"}
    again = service.switch_reading(conv, switch)
    second = again.runs[0].wait(20)
    assert second.node.input_numbers == [1, 2] and second.node.parent_number == 1
    assert again.runs[0].note == "Edited #1 using your photo #2 as a reference."
    # ... and back again: the photo is the picture once more; nothing was lost.
    back = service.switch_reading(conv, {k: v for k, v in again.runs[0].switch.items() if k != "label"})
    third = back.runs[0].wait(20)
    assert third.node.input_numbers == [2]
    assert {n.number for n in store.nodes(conv)} >= {first.node.number, second.node.number, third.node.number}


def test_a_forged_switch_payload_is_refused(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    _fox_then(service, store, conv)
    for payload in ({"role": "subject", "text": "x", "uploads": [1]},  # #1 is not an upload
                    {"role": "boss", "text": "x", "uploads": [1]},
                    {"role": "subject", "text": "x", "uploads": [True]},
                    {"role": "subject", "text": "x", "uploads": []},
                    {"role": "reference", "text": "x", "uploads": [99], "base": 1}):
        out = service.switch_reading(conv, payload)
        assert out.is_error and not out.runs, payload


def test_several_photos_first_is_the_picture_rest_references(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    _fox_then(service, store, conv)
    out, [res] = say(service, conv, "make it sunny", files=[("a.png", png("blue")), ("b.png", png("green"))])
    assert res.node.input_numbers == [2, 3]
    assert out.runs[0].note == "Edited your new photo (#2), with #3 as a reference."


def test_with_no_image_yet_the_photo_is_edited_and_there_is_nothing_to_switch(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    out, [res] = say(service, conv, "put the hat from this picture on him", files=[("p.png", png("blue"))])
    assert res.node.input_numbers == [1]
    assert out.runs[0].switch is None


def test_places_resolve_against_the_tree(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "", files=[("a.png", png())])  # #1 upload
    say(service, conv, "make it darker")  # #2
    say(service, conv, "add rain")  # #3
    assert service.apply(conv, Intent("checkout", anchor="original")).node.number == 1
    say(service, conv, "the last one")
    assert store.head(conv).number == 3
    out, [res] = say(service, conv, "using the original, add snow")
    assert res.node.parent_number == 1
    assert service.anchor_number(conv, "latest") == 4
    out, _ = say(service, conv, "the previous one")
    assert store.head(conv).number == 1


def test_two_requests_run_in_order_and_say_so(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "a fox")
    say(service, conv, "make it red")  # #2
    out, results = say(service, conv, "undo that and make it blue instead")
    assert results == [] and out.message.startswith("1 of 2 · Back to #1")
    assert out.after.runs[0].description.startswith("2 of 2 · Editing #1")
    assert out.after.runs[0].wait(20).node.parent_number == 1
    out, _ = say(service, conv, "go back to #2 and export it as jpeg")
    assert store.head(conv).number == 2
    assert out.after.export.filename.endswith("-2.jpg") and out.after.export.fmt == "jpeg"


def test_the_second_request_is_not_run_when_the_first_fails(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "a fox")
    out, results = say(service, conv, "undo that and make it blue instead")  # nothing before #1
    assert out.is_error and out.after is None and results == []


def test_an_ambiguous_message_asks_and_each_answer_does_its_thing(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    say(service, conv, "a fox")
    say(service, conv, "add rain")  # #2
    out, results = say(service, conv, "undo the rain")
    assert results == [] and [p["reading"] for _, p in out.choices] == ["move", "edit"]
    assert "back to #1" in out.choices[0][0]
    assert store.head(conv).number == 2  # nothing happened yet
    move = service.intent_for(conv, "undo the rain", reading="move")
    assert service.apply(conv, move).node.number == 1
    edit = service.intent_for(conv, "undo the rain", reading="edit")
    assert edit == Intent("edit", text="undo the rain")


def test_sample_uploads_the_bundled_photo_and_edits_it(world):
    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    out, [res] = say(service, conv, "/sample give the cat a hat")
    upload = store.node(conv, 1)
    assert upload.kind == "upload" and (upload.width, upload.height) == (451, 300)
    assert res.node.input_numbers == [1] and res.node.instruction == "give the cat a hat"
    out, _ = say(service, conv, "/sample")
    assert store.head(conv).kind == "upload" and "sample photo" in out.message


def test_draft_mode_makes_drafts_and_final_renders_a_full_quality_sibling(world):
    from assistant.render import describe
    from assistant.service import DRAFT_STEPS, FINAL_CFG, FINAL_STEPS, ChatSettings

    store, backend, service = world
    conv = store.create_conversation(owner="ann").id
    draft = ChatSettings(draft=True)
    out, [gen] = say(service, conv, "a red fox in snow", settings=draft)
    out, [edit] = say(service, conv, "add a scarf", settings=draft)
    for res in (gen, edit):
        assert res.node.params["draft"] is True and res.node.params["request"]["steps"] == DRAFT_STEPS
        assert res.node.params["request"]["true_cfg_scale"] == 1.0 and "draft" in describe(res.node)
    out, [final] = say(service, conv, "render this in full quality", settings=draft)
    node = final.node
    assert node.parent_number == edit.node.parent_number and node.input_numbers == edit.node.input_numbers
    assert node.params["seed"] == edit.node.params["seed"] and node.instruction == "add a scarf"
    assert node.params["request"]["steps"] == FINAL_STEPS and node.params["request"]["true_cfg_scale"] == FINAL_CFG
    assert node.params["draft"] is False and node.params["final_of"] == edit.node.number
    assert f"final of #{edit.node.number}" in describe(node)
    out, [again] = say(service, conv, f"/final {gen.node.number}")
    assert again.node.kind == "generate" and again.node.params["final_of"] == gen.node.number
    out, _ = say(service, conv, "", files=[("a.png", png())])
    out, _ = say(service, conv, "/final")  # an upload: nothing to render again
    assert out.is_error and "not something the model made" in out.message
