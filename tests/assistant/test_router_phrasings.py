"""The router against the ways people actually type, one table per family of phrasing.

Every family has a table of phrasings that must be read as the move, and a table of
near-misses that must stay edits of the current image: a phrase that names a thing in
the picture ("make the first car red", "add one more tree") is an edit. The router is
a pure function, so there are no fixtures: message in, Intent out.
"""

import pytest

from assistant.router import DEFAULT_VARIATIONS, Intent, route


def edit(text, base=None, anchor=None, role=None):
    return Intent("edit", text=text, base=base, anchor=anchor, role=role)


def checkout(base=None, anchor=None, then=None):
    return Intent("checkout", base=base, anchor=anchor, then=then)


def undo(count=1, then=None):
    return Intent("undo", count=count, then=then)


def redo(count=1, then=None):
    return Intent("redo", count=count, then=then)


def variations(count=1, base=None, anchor=None, then=None):
    return Intent("variations", count=count, base=base, anchor=anchor, then=then)


def default_variations(base=None):
    return Intent("variations", count=DEFAULT_VARIATIONS, base=base, default_count=True)


def export(fmt="png", then=None):
    return Intent("export", fmt=fmt, then=then)


ORIGINAL = checkout(anchor="original")
LATEST = checkout(anchor="latest")
HISTORY = Intent("history")


def case(text, expected):
    return pytest.param(text, expected, id=text)


def stays_edit(text):
    """The message is an ordinary edit of the current image, its words kept as typed."""
    assert route(text, has_image=True) == edit(text)


# ---------------------------------------------------------------- ordinals and places

@pytest.mark.parametrize("text, expected", [
    case("the third image", checkout(3)),
    case("the first one", checkout(1)),
    case("the original", ORIGINAL),
    case("the previous one", undo()),
    case("the last one", LATEST),
    case("the one before", undo()),
    case("ok now show me the 2nd one again please", checkout(2)),
    case("can we go back to the original?", ORIGINAL),
    case("Back to the original please.", ORIGINAL),
    case("go back to the first one", checkout(1)),
    case("show me the second image", checkout(2)),
    case("switch to the third picture", checkout(3)),
    case("take me back to the very first one", ORIGINAL),
    case("I liked the second one better", checkout(2)),
    case("let's go with the 4th version", checkout(4)),
    case("The last one, please", LATEST),
    case("show me the latest", LATEST),
    case("go to the newest one", LATEST),
    case("the most recent one", LATEST),
    case("go back to the previous one", undo()),
    case("the one before that", undo()),
    case("show me the one before", undo()),
    case("restore the original", ORIGINAL),
    case("Original please", ORIGINAL),
    case("can I see the original again?", ORIGINAL),
    case("go back to the start", ORIGINAL),
    case("back to the beginning", ORIGINAL),
    case("jump to the fifth one", checkout(5)),
    case("use the second one", checkout(2)),
    case("the 3rd", checkout(3)),
    case("hmm, the first picture was better", checkout(1)),
    case("let me see the first pic again", checkout(1)),
    case("can i have the original back", ORIGINAL),
    case("go back to the very beginning", ORIGINAL),
    case("the one from before", undo()),
    case("the one before this one", undo()),
    # Undoing everything is going back to the original.
    case("undo everything", ORIGINAL),
    case("revert all changes", ORIGINAL),
    case("reset it", ORIGINAL),
])
def test_ordinals_and_places(text, expected):
    assert route(text, has_image=True) == expected


@pytest.mark.parametrize("text", [
    "make the first car red",
    "make the last window glow",
    "remove the previous text",
    "the third person from the left should smile",
    "make the original colors brighter",
    "put the first letter in bold",
    "the last tree should be taller",
    "show the original colours of the car",
    "give the second dog a hat",
    "make it look like the original",
    "paint the one before the gate blue",
    "the one before the tree",
    "reset the colors",
])
def test_ordinals_naming_a_thing_stay_edits(text):
    stays_edit(text)


# ---------------------------------------------------------------- seeing an image again

@pytest.mark.parametrize("text, expected", [
    case("show me #2 again", checkout(2)),
    case("bring back image 2", checkout(2)),
    case("bring image 2 back", checkout(2)),
    case("Show image 3 again please", checkout(3)),
    case("can I see #4 again?", checkout(4)),
    case("let me see picture 2 again", checkout(2)),
    case("open #5 again", checkout(5)),
    case("I want #3 back", checkout(3)),
    case("get #2 back", checkout(2)),
    case("put image 2 back", checkout(2)),
    case("#2 again", checkout(2)),
    case("number 3 again please", checkout(3)),
    case("show me version 2 one more time", checkout(2)),
    case("bring back #1", checkout(1)),
    case("let's revisit #3", checkout(3)),
    case("reopen image 4", checkout(4)),
    case("could you show me number 2 again", checkout(2)),
    case("display #6 again", checkout(6)),
    case("I'd like to see #2 again", checkout(2)),
    case("show #2 once more", checkout(2)),
    case("pull up image 3 again", checkout(3)),
    case("take me back to #2", checkout(2)),
    case("can we see image 2 again", checkout(2)),
    case("Bring back picture #7!", checkout(7)),
    case("image two", checkout(2)),
    case("show me picture three again", checkout(3)),
    case("version two please", checkout(2)),
])
def test_seeing_an_image_again(text, expected):
    assert route(text, has_image=True) == expected


@pytest.mark.parametrize("text", [
    "bring back the hat from before",
    "bring back the sun",
    "show his face again",
    "put the tree back",
    "bring the blue sky back",
    "show more of the sky",
    "show the number 2 on his shirt again",
    "can I see more of the sky",
    "I'd like to see more clouds",
    "let me see a sunset",
    "pull up the car window",
    "make the picture two shades darker",
])
def test_seeing_a_thing_again_stays_an_edit(text):
    stays_edit(text)


# ---------------------------------------------------------------- the tree

@pytest.mark.parametrize("text", [
    "what have we done so far",
    "show all versions",
    "the edit tree",
    "What have we done so far?",
    "show me the edit history",
    "what did we do",
    "show me everything we've done",
    "show all the versions so far",
    "list all images",
    "can I see the whole history?",
    "where are we",
    "how did we get here?",
    "show me the timeline",
    "the tree please",
    "show the version tree",
    "show me all my edits",
    "what's the history",
    "overview please",
    "show me all the pictures so far",
    "all versions",
    "display the full tree",
    "what have I tried so far?",
    "show me what we've done so far",
    "recap",
    "show me what we have so far",
    "what have we got so far",
    "show every version",
    "show all the images we made",
    "where are we at",
])
def test_the_tree(text):
    assert route(text, has_image=True) == HISTORY


@pytest.mark.parametrize("text", [
    "put the history of rome in the background",
    "add a tree",
    "make the tree taller",
    "show all the people smiling",
    "draw a family tree on the wall",
    "add a timeline poster on the wall",
    "show every window lit",
    "show me what we did to the sky",
    "what have we got here",
])
def test_tree_words_in_an_instruction_stay_edits(text):
    stays_edit(text)


# ---------------------------------------------------------------- another take

@pytest.mark.parametrize("text, expected", [
    case("one more", variations()),
    case("again but different", variations()),
    case("try once more", variations()),
    case("try again", variations()),
    case("One more please!", variations()),
    case("another one", variations()),
    case("give me another", variations()),
    case("do it again", variations()),
    case("Again!", variations()),
    case("once more", variations()),
    case("one more time", variations()),
    case("try one more time", variations()),
    case("give it another go", variations()),
    case("another try", variations()),
    case("let's try again", variations()),
    case("can you try again?", variations()),
    case("try again but different", variations()),
    case("same but different", variations()),
    case("again, but differently", variations()),
    case("let's have another shot", variations()),
    case("one more variation", variations()),
    case("another take please", variations()),
    case("give me one more", variations()),
    case("another attempt", variations()),
    case("roll again", variations()),
    case("a couple more", variations(2)),
    case("give me a few more", variations(3)),
    case("more variations please", default_variations()),
    case("some more options", default_variations()),
    case("same again", variations()),
    case("once again", variations()),
    case("can I get another one", variations()),
    case("try something different", variations()),
])
def test_another_take(text, expected):
    assert route(text, has_image=True) == expected


@pytest.mark.parametrize("text", [
    "add one more tree",
    "one more cat",
    "try a different hat",
    "again but with a red hat",
    "try again with more contrast",
    "another one but blue",
    "make one more copy of the bird",
    "add another window",
    "try a different background",
    "give him one more arm",
    "a different take on the sky",
    "same again but with a hat",
    "once again the sky is too dark",
])
def test_another_thing_stays_an_edit(text):
    stays_edit(text)


# ---------------------------------------------------------------- a starting point, then an instruction

@pytest.mark.parametrize("text, expected", [
    case("take the first image and remove the car", edit("remove the car", base=1)),
    case("using #2, add snow", edit("add snow", base=2)),
    case("use the original and make it black and white", edit("make it black and white", anchor="original")),
    case("start from the second one and add a dog", edit("add a dog", base=2)),
    case("go back to the original and add a rainbow", edit("add a rainbow", anchor="original")),
    case("from the third image, make the sky purple", edit("make the sky purple", base=3)),
    case("take image 2 and make it night", edit("make it night", base=2)),
    case("Using the first picture, add a moon", edit("add a moon", base=1)),
    case("based on #3, add fog", edit("add fog", base=3)),
    case("on the second one, make the car blue", edit("make the car blue", base=2)),
    case("starting from #4, remove the people", edit("remove the people", base=4)),
    case("in image 2, add a boat", edit("add a boat", base=2)),
    case("Take the last one and make it brighter", edit("make it brighter", anchor="latest")),
    case("#2, add snow", edit("add snow", base=2)),
    case("grab the 3rd one and crop it square", edit("crop it square", base=3)),
    case("ok, from the original, make it a watercolor please", edit("make it a watercolor", anchor="original")),
    case("continue from #5 and add a cat", edit("add a cat", base=5)),
    case("work on the second image: add a frame", edit("add a frame", base=2)),
    case("use image 3 - add more light", edit("add more light", base=3)),
    case("pick the first one and make it sepia", edit("make it sepia", base=1)),
    case("go back to the first one and add snow", edit("add snow", base=1)),
    case("Could you take #2 and add a hat?", edit("add a hat", base=2)),
    case("switch to image 4, then add stars", edit("add stars", base=4)),
    case("go back to #3 and make it night", edit("make it night", base=3)),
    case("edit the first one: add a hat", edit("add a hat", base=1)),
    # The one before is a step back, so the edit runs after it.
    case("go back to the one before and add clouds", undo(then=edit("add clouds"))),
])
def test_a_starting_point_then_an_instruction(text, expected):
    assert route(text, has_image=True) == expected


@pytest.mark.parametrize("text", [
    "take the first car and paint it red",
    "use the first color for the sky",
    "on the first floor, add lights",
    "take #2 as the background",
    "in the second row, add a chair",
    "with the original lighting, add fog",
    "using 2 colors, paint the wall",
    "start with the first letter in red",
    "from the last window, hang a flag",
])
def test_a_starting_thing_stays_an_edit(text):
    stays_edit(text)


# ---------------------------------------------------------------- two things at once, in order

@pytest.mark.parametrize("text, expected", [
    case("undo that and make it blue instead", undo(then=edit("make it blue instead"))),
    case("go back to #2 and export it as jpeg", checkout(2, then=export("jpeg"))),
    case("undo and export", undo(then=export())),
    case("undo that, then show me the history", undo(then=HISTORY)),
    case("undo twice and then make the sky darker", undo(2, then=edit("make the sky darker"))),
    case("go back to the original and download it", checkout(anchor="original", then=export())),
    case("redo that and save it as webp", redo(then=export("webp"))),
    case("undo, then try again", undo(then=variations())),
    case("revert that and add a hat instead", undo(then=edit("add a hat instead"))),
    case("undo it and then remove the dog", undo(then=edit("remove the dog"))),
    case("go back one step and make the sky pink", undo(then=edit("make the sky pink"))),
    case("go back 2 steps and try again", undo(2, then=variations())),
    case("show me #4 and export it as png", checkout(4, then=export("png"))),
    case("switch to image 2 and save it", checkout(2, then=export())),
    case("Undo that, and then download it as jpg.", undo(then=export("jpeg"))),
    case("undo the last two and show me the history", undo(2, then=HISTORY)),
    case("Undo, and make it blue instead please", undo(then=edit("make it blue instead"))),
    case("go back to the first one and save as webp", checkout(1, then=export("webp"))),
    case("the original, then export as jpeg", checkout(anchor="original", then=export("jpeg"))),
    case("redo and then export", redo(then=export())),
    case("undo and try again", undo(then=variations())),
    case("try again and then save it", variations(then=export())),
    case("undo and then undo again", undo(then=undo())),
])
def test_two_things_at_once_run_in_order(text, expected):
    assert route(text, has_image=True) == expected


def test_a_chain_comes_out_first_thing_first():
    intent = route("undo that and make it blue instead", has_image=True)
    steps = []
    while intent is not None:
        steps.append(intent.kind)
        intent = intent.then
    assert steps == ["undo", "edit"]


@pytest.mark.parametrize("text", [
    "make the background darker and add rain",
    "add a hat and make it blue",
    "remove the car and then add a tree",
    "make it brighter, then add a frame",
    "go back to the original colors and add snow",
    "show the dog and hide the cat",
    "save the cat and make it blue",
])
def test_two_edits_in_one_message_stay_one_edit(text):
    stays_edit(text)


# ---------------------------------------------------------------- a move or an edit: ask

@pytest.mark.parametrize("text, edit_text", [
    ("undo the rain", "undo the rain"),
    ("revert the colors", "revert the colors"),
    ("undo the blur", "undo the blur"),
    ("take back the hat", "take back the hat"),
    ("revert the background", "revert the background"),
    ("Undo the snow please", "Undo the snow"),
    ("can you revert the lighting?", "revert the lighting"),
    ("reverse the colors", "reverse the colors"),
    ("roll back the saturation", "roll back the saturation"),
    ("undo my crop", "undo my crop"),
    ("undo the hat", "undo the hat"),
    ("revert the sky", "revert the sky"),
    ("undo this filter", "undo this filter"),
    ("undo that blur", "undo that blur"),
    ("revert these colors", "revert these colors"),
    ("undo the background change", "undo the background change"),
    ("Revert the colours!", "Revert the colours!"),
    ("undo the red tint", "undo the red tint"),
    ("undo the sunset effect", "undo the sunset effect"),
    ("revert the face", "revert the face"),
    ("undo all the changes to the sky", "undo all the changes to the sky"),
])
def test_a_move_verb_on_a_thing_asks(text, edit_text):
    intent = route(text, has_image=True)
    assert intent == Intent("ask", text=text.strip(), options=(Intent("undo"), edit(edit_text)))


@pytest.mark.parametrize("text", ["undo the rain", "revert the colors", "Undo the snow please"])
def test_the_chosen_reading_picks_its_option(text):
    asked = route(text, has_image=True)
    assert route(text, has_image=True, reading="move") == asked.options[0] == undo()
    assert route(text, has_image=True, reading="edit") == asked.options[1]
    assert asked.options[1].kind == "edit"


@pytest.mark.parametrize("text, expected", [
    case("undo the last one", undo()),
    case("undo that", undo()),
    case("undo the last two", undo(2)),
    case("undo my last edit", undo()),
    case("undo your last change", undo()),
    case("revert the last change", undo()),
    case("undo the undo", redo()),
    case("remove the rain", edit("remove the rain")),
    case("make the undo button red", edit("make the undo button red")),
])
def test_what_decides_it_is_not_asked(text, expected):
    assert route(text, has_image=True) == expected


def test_a_reading_does_not_change_a_clear_message():
    assert route("add a hat", has_image=True, reading="move") == edit("add a hat")
    assert route("undo", has_image=True, reading="edit") == undo()


def test_without_an_image_there_is_nothing_to_ask_about():
    assert route("undo the rain", has_image=False) == Intent("generate", text="undo the rain")


# ---------------------------------------------------------------- attached photos

@pytest.mark.parametrize("text", [
    "put the hat from this photo on him",
    "make it look like this",
    "in the style of this picture",
    "use this as a reference",
    "combine them",
    "add the dog from Picture 2",
    "with this background",
    "add this logo",
    "put this logo on his shirt",
    "make him wear this jacket",
    "use the colors from this photo",
    "make it look more like this one",
    "copy the lighting from this",
    "give him this hairstyle",
    "swap the sky with the one in this photo",
    "make the sky like in this picture",
    "match the colors of this image",
    "use these two as references",
    "merge the two photos",
    "blend this with the current image",
    "replace the background with this",
    "add the cat from the second picture",
    "make the lighting match this",
    "same style as this",
    "like this please",
    "use it as the background",
    "take the face from this photo",
    "paint it in this style",
    "add this sticker to the wall",
    "same colors as this",
    "make it as bright as this one",
    "this is the background I want",
    "apply this texture to the wall",
    "make him look like the guy in the photo",
    "add the cat from picture two",
    "can I see it in this style",
])
def test_words_pointing_at_the_photo_make_it_a_reference(text):
    intent = route(text, has_image=True, attachments=1)
    assert (intent.kind, intent.role, intent.base, intent.anchor) == ("edit", "reference", None, None)


@pytest.mark.parametrize("text", [
    "make the background darker and add rain",
    "make this photo black and white",
    "in this photo, make the sky blue",
    "turn it into a watercolor",
    "remove the person on the left",
    "crop this picture to a square",
    "fix the lighting in this one",
    "make it brighter",
    "add a hat to the dog",
    "edit this photo instead: make it warmer",
    "Make him smile",
    "remove the background",
    "put a hat on him",
    "make it look like a watercolor",
    "make this look like a 1950s postcard",
    "change the color of the car to red",
    "blur the background",
    "in this picture, remove the car",
    "remove the text from this photo",
    "get rid of the people in this picture",
    "clean up this photo",
    "make the colors in this picture pop",
    "restore this old photo",
    "add snow to this photo",
    "put a frame around this picture",
    "make the person in this picture smile",
    "this is my dog, add a hat",
    "make the sky in this photo blue",
    "here's a new photo: make it brighter",
    "use this photo instead",
    "this photo is too dark",
    "turn this into a cartoon",
    "make this a painting",
])
def test_a_photo_with_an_instruction_is_the_picture_to_edit(text):
    intent = route(text, has_image=True, attachments=1)
    assert (intent.kind, intent.role, intent.base, intent.anchor) == ("edit", "subject", None, None)


@pytest.mark.parametrize("text", [
    "make the background darker",
    "turn them into a poster",
    "remove the person on the left",
    "make it a night scene",
])
def test_several_photos_without_source_words_edit_the_first(text):
    assert route(text, has_image=True, attachments=3).role == "subject"
    assert route(text, has_image=False, attachments=2).role == "subject"


@pytest.mark.parametrize("text", [
    "put the hat from this photo on him",
    "make it look like this",
    "use this as a reference",
    "combine them",
    "add this logo",
])
def test_with_no_current_image_the_first_photo_is_the_subject(text):
    intent = route(text, has_image=False, attachments=2)
    assert (intent.kind, intent.role) == ("edit", "subject")


@pytest.mark.parametrize("text, role", [
    ("make it look like this", "subject"),
    ("combine them", "subject"),
    ("make it brighter", "reference"),
    ("remove the person on the left", "reference"),
])
def test_a_role_given_by_the_caller_wins_over_the_words(text, role):
    assert route(text, has_image=True, attachments=1, role=role).role == role
