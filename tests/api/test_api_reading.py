"""The HTTP API reads attached photos as the chat does, and can be told outright.

A photo sent with plain words is the picture to edit; words that point at it as a
source make it a reference for the current image; the form field role=subject|reference
overrides the words. A message that could be a move or an edit answers with the
choices, and reading=move|edit picks one. Two requests in one message both happen.
"""

from __future__ import annotations

import pytest

from api_support import API, png_bytes, poll_job
from test_api_local import api, new_conversation, send, token  # noqa: F401  (fixtures)


def _with_image(api) -> str:
    conv = new_conversation(api)
    r = send(api, conv, "a red fox in snow")
    assert poll_job(api, r.json()["jobs"][0])["status"] == "succeeded"
    return conv


def _inputs(api, conv, job_id) -> list[int]:
    job = poll_job(api, job_id)
    assert job["status"] == "succeeded", job
    nodes = {n["number"]: n for n in api.get(f"{API}/conversations/{conv}").json()["nodes"]}
    return nodes[job["node"]]["inputs"]


def test_plain_words_edit_the_new_photo(api):
    conv = _with_image(api)
    r = send(api, conv, "make the background darker and add rain", images=[("p.png", png_bytes(color=(1, 2, 3)))])
    assert r.status_code == 202, r.text
    assert r.json()["notes"] == ["Edited your new photo (#2)."]
    assert _inputs(api, conv, r.json()["jobs"][0]) == [2]


def test_pointing_words_make_a_reference(api):
    conv = _with_image(api)
    r = send(api, conv, "put the hat from this picture on the person", images=[("h.png", png_bytes(color=(4, 5, 6)))])
    assert r.json()["notes"] == ["Edited #1 using your photo #2 as a reference."]
    assert _inputs(api, conv, r.json()["jobs"][0]) == [1, 2]


@pytest.mark.parametrize("role, words, inputs", [
    ("reference", "make the background darker", [1, 2]),
    ("subject", "put the hat from this picture on the person", [2]),
])
def test_the_role_field_wins_over_the_words(api, role, words, inputs):
    conv = _with_image(api)
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": words, "role": role},
                 files=[("images", ("x.png", png_bytes(color=(7, 8, len(role))), "image/png"))])
    assert r.status_code == 202, r.text
    assert _inputs(api, conv, r.json()["jobs"][0]) == inputs


def test_a_bad_role_or_a_role_without_images_is_a_422(api):
    conv = _with_image(api)
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": "x", "role": "background"},
                 files=[("images", ("x.png", png_bytes(), "image/png"))])
    assert r.status_code == 422 and "subject or reference" in r.json()["detail"]
    r = api.post(f"{API}/conversations/{conv}/messages", data={"text": "x", "role": "subject"})
    assert r.status_code == 422 and "attach at least one" in r.json()["detail"]


def test_an_ambiguous_message_offers_choices_and_reading_picks_one(api):
    conv = _with_image(api)
    r = send(api, conv, "add rain")
    poll_job(api, r.json()["jobs"][0])
    r = send(api, conv, "undo the rain")
    assert r.status_code == 200 and r.json()["choices"] == ["move", "edit"] and not r.json()["jobs"]
    r = api.post(f"{API}/conversations/{conv}/messages", json={"text": "undo the rain", "reading": "move"})
    assert r.status_code == 200 and r.json()["head"] == 1
    r = api.post(f"{API}/conversations/{conv}/messages", json={"text": "undo the rain", "reading": "maybe"})
    assert r.status_code == 422


def test_two_requests_in_one_message(api):
    conv = _with_image(api)
    r = send(api, conv, "add rain")
    poll_job(api, r.json()["jobs"][0])
    r = send(api, conv, "go back to #1 and export it as jpeg")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["head"] == 1 and out["export"].endswith("format=jpeg&node=1")
    assert out["message"].startswith("1 of 2 · Now at #1") and "2 of 2" in out["message"]
