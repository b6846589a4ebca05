"""The router as a table: message in, Intent out. Pure function, so no fixtures."""

import dataclasses

import pytest

from assistant.router import (
    COMMANDS,
    DEFAULT_VARIATIONS,
    KINDS,
    MAX_VARIATIONS,
    Intent,
    route,
)


def edit(text, base=None, role=None):
    return Intent("edit", text=text, base=base, role=role)


def generate(text):
    return Intent("generate", text=text)


def undo(count=1):
    return Intent("undo", count=count)


def redo(count=1):
    return Intent("redo", count=count)


def checkout(base):
    return Intent("checkout", base=base)


def variations(count=1, base=None):
    return Intent("variations", count=count, base=base)


def default_variations(base=None):
    return Intent("variations", count=DEFAULT_VARIATIONS, base=base, default_count=True)


def export(fmt="png", base=None):
    return Intent("export", fmt=fmt, base=base)


HISTORY = Intent("history")
HELP = Intent("help")


def case(text, expected):
    return pytest.param(text, expected, id=text or "<empty>")


# ---------------------------------------------------------------- undo / redo

@pytest.mark.parametrize("text, expected", [
    case("undo", undo()),
    case("Undo.", undo()),
    case("UNDO!!", undo()),
    case("  undo  ", undo()),
    case("undo that", undo()),
    case("undo it please", undo()),
    case("please undo", undo()),
    case("can you undo that?", undo()),
    case("Could you please undo that, thanks!", undo()),
    case("oops, undo", undo()),
    case("no, undo that", undo()),
    case("undo last change", undo()),
    case("undo the last one", undo()),
    case("undo the last two", undo(2)),
    case("undo the last 2 edits", undo(2)),
    case("undo   the   last   three", undo(3)),
    case("undo 3 times", undo(3)),
    case("undo 4", undo(4)),
    case("undo twice", undo(2)),
    case("undo the last ten", undo(10)),
    case("go back one step", undo()),
    case("go back a step", undo()),
    case("go back", undo()),
    case("back", undo()),
    case("go back 2 steps", undo(2)),
    case("go back three steps", undo(3)),
    case("step back", undo()),
    case("step back twice", undo(2)),
    case("revert", undo()),
    case("revert that", undo()),
    case("previous one", undo()),
    case("redo", redo()),
    case("Redo that.", redo()),
    case("redo please", redo()),
    case("redo 2", redo(2)),
    case("go forward", redo()),
    case("undo the undo", redo()),
])
def test_undo_and_redo(text, expected):
    assert route(text, has_image=True) == expected


def test_undo_zero_steps_is_refused():
    intent = route("undo 0 times", has_image=True)
    assert intent.kind == "help" and "at least one step" in intent.text


# ---------------------------------------------------------------- checkout

@pytest.mark.parametrize("text, expected", [
    case("#3", checkout(3)),
    case("#12", checkout(12)),
    case("# 12", checkout(12)),
    case("#3?", checkout(3)),
    case("3", checkout(3)),
    case("go back to #3", checkout(3)),
    case("Go back to #3.", checkout(3)),
    case("back to 3", checkout(3)),
    case("go to 7", checkout(7)),
    case("revert to 3", checkout(3)),
    case("roll back to #5", checkout(5)),
    case("show me #3", checkout(3)),
    case("Show me image #4", checkout(4)),
    case("switch to image 3", checkout(3)),
    case("jump to picture 5", checkout(5)),
    case("checkout 3", checkout(3)),
    case("check out #3", checkout(3)),
    case("restore #3", checkout(3)),
    case("open #21", checkout(21)),
    case("please go back to #3", checkout(3)),
    case("branch from #2", checkout(2)),
    case("branch off #2", checkout(2)),
    case("from #2", checkout(2)),
    case("start again from #3", checkout(3)),
])
def test_checkout(text, expected):
    assert route(text, has_image=True) == expected


def test_node_zero_does_not_exist():
    intent = route("#0", has_image=True)
    assert intent.kind == "help" and "#1" in intent.text


# ---------------------------------------------------------------- edits from an earlier image

@pytest.mark.parametrize("text, expected", [
    case("branch from #2 and make it night", edit("make it night", base=2)),
    case("branch from #2 make it night", edit("make it night", base=2)),
    case("from #2, add a hat", edit("add a hat", base=2)),
    case("From #12: Add a Hat please", edit("Add a Hat", base=12)),
    case("go back to #3 and make it night", edit("make it night", base=3)),
    case("Go back to #3, then make it night", edit("make it night", base=3)),
    case("go back to image 3 and add snow", edit("add snow", base=3)),
    case("revert to 3 and add snow", edit("add snow", base=3)),
    case("please branch off #4 and turn it into a sketch", edit("turn it into a sketch", base=4)),
    case("#3, make it night", edit("make it night", base=3)),
    case("#3: make it night", edit("make it night", base=3)),
    case("take #5 and remove the car", edit("remove the car", base=5)),
    case("start over from #2 and add fog", edit("add fog", base=2)),
    case("from #2, can you make it look like a watercolor?", edit("make it look like a watercolor", base=2)),
    case("go back to #3 and try again", variations(1, base=3)),
    case("from #2, give me 4 variations", variations(4, base=2)),
])
def test_edit_from_an_earlier_image(text, expected):
    assert route(text, has_image=True) == expected


# ---------------------------------------------------------------- variations

@pytest.mark.parametrize("text, expected", [
    case("try again", variations(1)),
    case("Try it again!", variations(1)),
    case("again", variations(1)),
    case("another one", variations(1)),
    case("give me another one", variations(1)),
    case("one more", variations(1)),
    case("another version", variations(1)),
    case("a different take", variations(1)),
    case("reroll", variations(1)),
    case("re-roll", variations(1)),
    case("regenerate", variations(1)),
    case("give me 3 variations", variations(3)),
    case("give me five variations", variations(5)),
    case("show me 8 versions", variations(8)),
    case("make two variants", variations(2)),
    case("3 more", variations(3)),
    case("another 2", variations(2)),
    case("a couple of variations", variations(2)),
    case("a few more options", variations(3)),
    case("variations", default_variations()),
    case("more variations", default_variations()),
    case("some variations please", default_variations()),
    case("give me variations", default_variations()),
    case("variations of #2", default_variations(base=2)),
    case("give me 2 versions of image 4", variations(2, base=4)),
])
def test_variations(text, expected):
    assert route(text, has_image=True) == expected


@pytest.mark.parametrize("text", ["give me 9 variations", "show me ten versions", "100 more"])
def test_variations_above_the_cap_are_refused(text):
    intent = route(text, has_image=True)
    assert intent.kind == "help" and str(MAX_VARIATIONS) in intent.text


# ---------------------------------------------------------------- export, history, help

@pytest.mark.parametrize("text, expected", [
    case("export", export()),
    case("download it", export()),
    case("save it", export()),
    case("download the image", export()),
    case("export as jpeg", export("jpeg")),
    case("Save it as a JPG.", export("jpeg")),
    case("save as webp", export("webp")),
    case("export jpeg", export("jpeg")),
    case("download the image as png", export("png")),
    case("save as .jpg", export("jpeg")),
    case("export #3 as webp", export("webp", base=3)),
    case("save the whole history", export("history")),
    case("export history", export("history")),
    case("download everything", export("history")),
    case("download all images", export("history")),
    case("export the entire history as a zip", export("history")),
])
def test_export(text, expected):
    assert route(text, has_image=True) == expected


def test_export_unknown_format_is_refused():
    intent = route("export as gif", has_image=True)
    assert intent.kind == "help" and "gif" in intent.text and "png" in intent.text


@pytest.mark.parametrize("text, expected", [
    case("history", HISTORY),
    case("History?", HISTORY),
    case("show history", HISTORY),
    case("show the tree", HISTORY),
    case("Show me the history!", HISTORY),
    case("view the whole tree", HISTORY),
    case("show me all images", HISTORY),
    case("help", HELP),
    case("HELP!", HELP),
    case("what can you do", HELP),
    case("What can you do?", HELP),
    case("how does this work", HELP),
    case("commands", HELP),
    case("?", HELP),
    case("thanks", HELP),
    case("ok", HELP),
])
def test_history_and_help(text, expected):
    assert route(text, has_image=True) == expected


# ---------------------------------------------------------------- generate

@pytest.mark.parametrize("text, expected", [
    case("start over with a cat on a roof", generate("a cat on a roof")),
    case("Start over: a blue vase", generate("a blue vase")),
    case("start fresh, a city at dusk", generate("a city at dusk")),
    case("from scratch, a lighthouse in fog", generate("a lighthouse in fog")),
    case("generate a red fox in snow", generate("a red fox in snow")),
    case("Please generate a red fox in snow", generate("a red fox in snow")),
    case("can you generate me a castle?", generate("a castle")),
    case("make me an image of a lighthouse", generate("a lighthouse")),
    case("create a picture of a dog", generate("a dog")),
    case("draw an image of a castle at night", generate("a castle at night")),
    case("paint me a picture of the sea", generate("the sea")),
    case("new image of a teapot", generate("a teapot")),
    case("draw a watercolor painting of a harbor", generate("a watercolor painting of a harbor")),
    case("draw me a cat", generate("a cat")),
])
def test_generate(text, expected):
    assert route(text, has_image=True) == expected
    assert route(text, has_image=False) == expected


@pytest.mark.parametrize("text", ["generate", "start over", "new image of", "/new"])
def test_generate_without_a_prompt_asks_for_one(text):
    intent = route(text, has_image=True)
    assert intent.kind == "help" and "/new" in intent.text


@pytest.mark.parametrize("text", [
    "a cat on a roof",
    "make the background darker",
    "can you make it look like a watercolor?",
    "undo the blur",
    "  A lighthouse,\nat dusk  ",
])
def test_without_an_image_any_prompt_generates_unchanged(text):
    assert route(text, has_image=False) == generate(text.strip())


@pytest.mark.parametrize("text, expected", [
    case("undo", undo()),
    case("help", HELP),
    case("#2", checkout(2)),
    case("branch from #2 and make it night", edit("make it night", base=2)),
])
def test_without_an_image_commands_still_work(text, expected):
    assert route(text, has_image=False) == expected


# ---------------------------------------------------------------- plain edits, including near-misses

@pytest.mark.parametrize("text, expected_text", [
    ("make the background darker and add rain", "make the background darker and add rain"),
    ("can you make it look like a watercolor?", "make it look like a watercolor"),
    ("Please add a hat, thanks", "add a hat"),
    ("Make it night.", "Make it night."),
    ("add a sign that says thank you", "add a sign that says thank you"),
    ("no rain, just clouds", "no rain, just clouds"),
    # Command words inside a longer instruction are part of the instruction.
    ("make the undo button red", "make the undo button red"),
    ("add a redo sign", "add a redo sign"),
    ("remove the #3 sticker", "remove the #3 sticker"),
    ("help me make it brighter", "help me make it brighter"),
    ("put the history of rome in the background", "put the history of rome in the background"),
    ("save the cat from the fire", "save the cat from the fire"),
    ("save cat", "save cat"),
    ("export the sky to the left", "export the sky to the left"),
    ("try again with more contrast", "try again with more contrast"),
    ("another one but blue", "another one but blue"),
    ("make 3 versions of the logo on the wall", "make 3 versions of the logo on the wall"),
    ("show me a cat instead", "show me a cat instead"),
    ("go back to the original colors", "go back to the original colors"),
    ("draw a cat", "draw a cat"),
    ("paint a logo on the wall", "paint a logo on the wall"),
    ("make me look older", "make me look older"),
    ("new york skyline at night", "new york skyline at night"),
    ("add a new picture frame on the wall", "add a new picture frame on the wall"),
    ("on 3 sides add a border", "on 3 sides add a border"),
    ("from 3 meters away the building looks small", "from 3 meters away the building looks small"),
    ("take #2 as the background", "take #2 as the background"),
    ("#3 make it night", "#3 make it night"),
    ("generated look, less plastic", "generated look, less plastic"),
    ("/home/me/cat.png make it blue", "/home/me/cat.png make it blue"),
])
def test_edit_of_the_current_image(text, expected_text):
    assert route(text, has_image=True) == edit(expected_text)


def test_whole_picture_operations_are_exact_and_parts_stay_edits():
    assert route("make the picture brighter", has_image=True) == Intent(
        "op", text="make the picture brighter", op={"name": "adjust", "brightness": 1.2})
    assert route("rotate it 90 degrees", has_image=True).op == {"name": "rotate", "degrees": 90}
    assert route("rotate the car", has_image=True) == edit("rotate the car")
    assert route("make the background darker", has_image=True) == edit("make the background darker")
    # With no image there is nothing to rotate: the words describe a picture.
    assert route("make it black and white", has_image=False).kind == "generate"


@pytest.mark.parametrize("text", ["/squash", "squash", "do all of that in one go", "all of that at once",
                                  "combine all the edits into one", "redo everything in a single edit"])
def test_squash_phrasings(text):
    assert route(text, has_image=True) == Intent("squash")


@pytest.mark.parametrize("text", ["squash the bug on the wall", "do all of that again", "combine the two cats"])
def test_squash_near_misses_stay_edits_or_takes(text):
    assert route(text, has_image=True).kind != "squash"


# ---------------------------------------------------------------- attachments and empty messages

@pytest.mark.parametrize("text, has_image, attachments, expected", [
    ("", True, 1, Intent("upload")),
    ("   ", False, 2, Intent("upload")),
    (None, False, 1, Intent("upload")),
    ("", True, 0, HELP),
    ("  \n ", False, 0, HELP),
    (None, True, 0, HELP),
    # With an image, words that point at the photo as a source make it a reference ...
    ("put this hat on him", True, 1, edit("put this hat on him", role="reference")),
    ("can you put this hat on him?", True, 2, edit("put this hat on him", role="reference")),
    ("generate a cat like this", True, 1, edit("generate a cat like this", role="reference")),
    # ... and with no image yet, the first photo is the picture to edit whatever the words.
    ("put this hat on him", False, 1, edit("put this hat on him", role="subject")),
    ("generate a cat like this", False, 1, edit("generate a cat like this", role="subject")),
    # An image named in the words: the photos are its references.
    ("from #2, put this hat on him", True, 1, edit("put this hat on him", base=2, role="reference")),
    ("#2", True, 1, Intent("edit", base=2, role="reference")),
    # With files attached the words describe how to use them, even command words.
    ("undo", True, 1, edit("undo", role="subject")),
    # Slash commands are explicit and win over attachments.
    ("/undo", True, 1, undo()),
    ("/new a cat", True, 1, generate("a cat")),
])
def test_attachments_and_empty_messages(text, has_image, attachments, expected):
    assert route(text, has_image=has_image, attachments=attachments) == expected


def test_negative_attachments_is_a_programming_error():
    with pytest.raises(ValueError, match="attachments"):
        route("hi", has_image=True, attachments=-1)


# ---------------------------------------------------------------- slash commands

@pytest.mark.parametrize("text, expected", [
    case("/undo", undo()),
    case("/undo 3", undo(3)),
    case("/undo two", undo(2)),
    case("/UNDO 2", undo(2)),
    case("/redo", redo()),
    case("/redo 2", redo(2)),
    case("/goto 3", checkout(3)),
    case("/goto #3", checkout(3)),
    case("/goto #12", checkout(12)),
    case("/checkout 4", checkout(4)),
    case("/branch 2", checkout(2)),
    case("/branch 2 make it night", edit("make it night", base=2)),
    case("/branch #2, Make It Night", edit("Make It Night", base=2)),
    case("/variations", default_variations()),
    case("/variations 5", variations(5)),
    case("/variations one", variations(1)),
    case(f"/variations {MAX_VARIATIONS}", variations(MAX_VARIATIONS)),
    case("/export", export()),
    case("/export png", export("png")),
    case("/export jpg", export("jpeg")),
    case("/export JPEG", export("jpeg")),
    case("/export webp", export("webp")),
    case("/export history", export("history")),
    case("/history", HISTORY),
    case("/help", HELP),
    case("/new a cat on a roof", generate("a cat on a roof")),
    case("/new   A cat, on a roof!", generate("A cat, on a roof!")),
    case("/foo", Intent("help", text="Unknown command /foo")),
    case("/foo bar baz", Intent("help", text="Unknown command /foo")),
    case("/", Intent("help", text="Unknown command /")),
])
def test_slash_commands(text, expected):
    assert route(text, has_image=True) == expected


@pytest.mark.parametrize("text, message_part", [
    ("/undo abc", "/undo 2"),
    ("/undo 0", "at least one step"),
    ("/undo -1", "/undo 2"),
    ("/redo x", "/redo 2"),
    ("/goto", "Say which image: /goto 3"),
    ("/goto abc", "Say which image: /goto 3"),
    ("/goto 0", "#1"),
    ("/branch", "/branch 3"),
    ("/branch x make it night", "/branch 3"),
    ("/variations lots", "/variations 4"),
    ("/variations 0", "at least one"),
    (f"/variations {MAX_VARIATIONS + 1}", f"at most {MAX_VARIATIONS}"),
    ("/export gif", "gif"),
    ("/new", "/new a cat"),
])
def test_slash_command_arguments_are_checked(text, message_part):
    intent = route(text, has_image=True)
    assert intent.kind == "help"
    assert message_part in intent.text


def test_every_slash_command_has_a_usage_line():
    for name in ("undo", "redo", "goto", "branch", "variations", "export", "history", "new", "help"):
        assert COMMANDS[name].startswith(f"/{name}")


# ---------------------------------------------------------------- the Intent itself

def test_intent_defaults_and_immutability():
    intent = Intent("edit", text="add a hat")
    assert (intent.base, intent.count, intent.fmt) == (None, 1, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        intent.count = 2


@pytest.mark.parametrize("fields, message", [
    ({"kind": "paint"}, "unknown intent kind"),
    ({"kind": "undo", "count": 0}, "count"),
    ({"kind": "checkout", "base": 0}, "base"),
    ({"kind": "export"}, "fmt"),
    ({"kind": "export", "fmt": "gif"}, "fmt"),
    ({"kind": "edit", "fmt": "png"}, "fmt"),
])
def test_intent_rejects_impossible_values(fields, message):
    with pytest.raises(ValueError, match=message):
        Intent(**fields)


def test_every_routed_kind_is_a_known_kind():
    samples = ["undo", "redo", "#2", "try again", "export", "history", "help", "generate a cat", "add a hat",
               "undo the rain", "/sample", "rotate it 90 degrees", "/squash", "/final"]
    kinds = {route(text, has_image=True).kind for text in samples}
    kinds.add(route("", has_image=True, attachments=1).kind)
    assert kinds == set(KINDS)


@pytest.mark.parametrize("text, base", [
    ("/final", None), ("/final 3", 3), ("render this in full quality", None), ("render #3 in full quality", 3),
    ("final render", None), ("a full quality version of #2", 2), ("finalize it", None), ("full quality", None),
])
def test_final_phrasings(text, base):
    assert route(text, has_image=True) == Intent("final", base=base)


@pytest.mark.parametrize("text", ["make the final version of the poster red", "add a full quality stamp"])
def test_final_near_misses_stay_edits(text):
    assert route(text, has_image=True).kind == "edit"


@pytest.mark.parametrize("text, has_image, expected", [
    ('!make the sign say "OPEN"', True, Intent("edit", text='make the sign say "OPEN"', verbatim=True)),
    ("!undo", True, Intent("edit", text="undo", verbatim=True)),
    ("! a cat on a roof", False, Intent("generate", text="a cat on a roof", verbatim=True)),
])
def test_a_leading_bang_sends_the_words_as_typed(text, has_image, expected):
    assert route(text, has_image=has_image) == expected
