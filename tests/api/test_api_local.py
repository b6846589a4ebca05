"""The HTTP API against the real server in local mode, on the offline tiny model.

Covers sign-in (cookie and bearer token), every route, bad ids and numbers, body
limits (declared up front and streamed), refused uploads, and the whole flow: create,
send an image with an instruction, poll the job, read the tree and the image,
export, delete.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from api_support import (API, damaged_jpeg, fixture_bytes, pixel_bomb, png_bytes, png_with_big_profile,
                         poll_job, raw_request)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def token(local_server) -> str:
    r = local_server.client().post(f"{API}/token")
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "bearer"
    return r.json()["access_token"]


@pytest.fixture(scope="module")
def api(local_server, token):
    return local_server.client(token)


def new_conversation(api, title=None) -> str:
    r = api.post(f"{API}/conversations", json={"title": title} if title else None)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def send(api, conv, text=None, images=(), **kwargs):
    """POST a message: JSON when there are no images, else multipart."""
    if not images:
        return api.post(f"{API}/conversations/{conv}/messages", json={"text": text or ""}, **kwargs)
    files = [("images", (name, data, "application/octet-stream")) for name, data in images]
    data = {"text": text} if text is not None else {}
    return api.post(f"{API}/conversations/{conv}/messages", data=data, files=files, **kwargs)


# ---- the document, sign-in ------------------------------------------------------------------


def test_openapi_document_and_docs(local_server):
    c = local_server.client()
    doc = c.get(f"{API}/openapi.json")
    assert doc.status_code == 200
    paths = doc.json()["paths"]
    for path in ("/conversations", "/conversations/{conversation_id}",
                 "/conversations/{conversation_id}/nodes/{number}/image",
                 "/conversations/{conversation_id}/export",
                 "/conversations/{conversation_id}/messages", "/jobs/{job_id}", "/token"):
        assert path in paths, path
    body = paths["/conversations/{conversation_id}/messages"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    docs = c.get(f"{API}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # An unknown API path is the API's 404, not Chainlit's page.
    missing = c.get(f"{API}/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/json")


ROUTES = [
    ("GET", "/conversations"), ("POST", "/conversations"), ("GET", "/conversations/x"),
    ("PATCH", "/conversations/x"), ("DELETE", "/conversations/x"),
    ("GET", "/conversations/x/nodes/1/image"), ("GET", "/conversations/x/export"),
    ("POST", "/conversations/x/messages"), ("GET", "/jobs/x"),
]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_sign_in(local_server, method, path):
    plain = local_server.client()
    assert plain.request(method, API + path).status_code == 401
    forged = local_server.client("not-a-token")
    assert forged.request(method, API + path).status_code == 401


def test_cookie_from_the_chat_sign_in_works_too(local_server):
    c = local_server.client()
    r = c.post("/auth/header")
    assert r.status_code == 200 and "access_token" in c.cookies
    assert c.get(f"{API}/conversations").status_code == 200
    # The cookie's value is the same kind of token, usable as a bearer token.
    bearer = local_server.client(c.cookies["access_token"])
    assert bearer.get(f"{API}/conversations").status_code == 200


# ---- conversations --------------------------------------------------------------------------


def test_create_list_rename(api):
    r = api.post(f"{API}/conversations", json={"title": "  Red   fox  "})
    assert r.status_code == 201
    conv = r.json()
    assert conv["title"] == "Red fox" and conv["head"] is None
    assert r.headers["location"] == f"{API}/conversations/{conv['id']}"
    assert conv["created_at"].endswith("Z")
    untitled = api.post(f"{API}/conversations")
    assert untitled.status_code == 201 and untitled.json()["title"] is None

    listed = api.get(f"{API}/conversations").json()
    ids = [c["id"] for c in listed]
    assert conv["id"] in ids and untitled.json()["id"] in ids
    assert set(listed[0]) >= {"id", "title", "head", "created_at", "updated_at"}

    r = api.patch(f"{API}/conversations/{conv['id']}", json={"title": "Blue fox"})
    assert r.status_code == 200 and r.json()["title"] == "Blue fox"
    assert api.get(f"{API}/conversations/{conv['id']}").json()["title"] == "Blue fox"


@pytest.mark.parametrize("body", [{"title": "   "}, {"title": 5}, {}, {"title": "x", "owner": "bob"},
                                  {"title": "x" * 501}, {"title": "nul\x00here"}])
def test_rename_refuses_bad_titles(api, body):
    conv = new_conversation(api)
    assert api.patch(f"{API}/conversations/{conv}", json=body).status_code == 422


def test_create_refuses_malformed_bodies(api):
    assert api.post(f"{API}/conversations", json={"title": "x" * 501}).status_code == 422
    assert api.post(f"{API}/conversations", json={"owner": "someone"}).status_code == 422
    r = api.post(f"{API}/conversations", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


# ---- bad ids and numbers --------------------------------------------------------------------


def test_unknown_ids_are_404(api):
    missing = "0" * 32
    for method, path in [("GET", f"/conversations/{missing}"), ("PATCH", f"/conversations/{missing}"),
                         ("DELETE", f"/conversations/{missing}"),
                         ("GET", f"/conversations/{missing}/nodes/1/image"),
                         ("GET", f"/conversations/{missing}/export"),
                         ("GET", f"/jobs/{missing}"), ("GET", "/jobs/..%2F..%2Fetc"),
                         ("GET", "/conversations/%27%20OR%201%3D1%20--")]:
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        r = api.request(method, API + path, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
        assert isinstance(r.json()["detail"], str)
    r = send(api, missing, "make it blue")
    assert r.status_code == 404


@pytest.mark.parametrize("number", ["0", "-1", "abc", "1.5", "99", "99999999999999999999", "%C2%B2"])
def test_bad_node_numbers_are_404(api, number):
    conv = new_conversation(api)
    assert send(api, conv, images=[("a.png", png_bytes())]).status_code == 200
    r = api.get(f"{API}/conversations/{conv}/nodes/{number}/image")
    assert r.status_code == 404, r.text


def test_export_checks_its_query(api):
    conv = new_conversation(api)
    assert api.get(f"{API}/conversations/{conv}/export").status_code == 404  # no image yet
    assert send(api, conv, images=[("a.png", png_bytes())]).status_code == 200
    assert api.get(f"{API}/conversations/{conv}/export", params={"format": "gif"}).status_code == 422
    assert api.get(f"{API}/conversations/{conv}/export", params={"node": "x"}).status_code == 422
    assert api.get(f"{API}/conversations/{conv}/export", params={"node": "0"}).status_code == 422
    assert api.get(f"{API}/conversations/{conv}/export", params={"node": "7"}).status_code == 404
    assert api.get(f"{API}/conversations/{conv}/export", params={"node": "1"}).status_code == 200


# ---- limits ---------------------------------------------------------------------------------


def test_body_declared_too_large_is_413_before_it_is_sent(local_server, api, token):
    conv = new_conversation(api)
    status, headers, body = raw_request(
        local_server, "POST", f"{API}/conversations/{conv}/messages",
        {"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=x",
         "Content-Length": str(200 * 2**20)}, chunks=[b"--x\r\n"])
    assert status == 413
    assert "limit" in json.loads(body)["detail"]
    status, _, body = raw_request(
        local_server, "PATCH", f"{API}/conversations/{conv}",
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
         "Content-Length": str(2**20)}, chunks=[b"{"])
    assert status == 413 and "KB" in json.loads(body)["detail"]


def test_streamed_body_too_large_is_413(local_server, api, token):
    conv = new_conversation(api)
    auth = {"Authorization": f"Bearer {token}"}
    # A small route: 64 KB.
    status, _, body = raw_request(local_server, "PATCH", f"{API}/conversations/{conv}",
                                  {**auth, "Content-Type": "application/json"},
                                  chunks=[b" " * 16384] * 64, chunked=True)
    assert status == 413, body
    # The message route: three full images and a little more, streamed without a length.
    boundary = "qecboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    chunks = [head] + [b"\0" * 2**20] * 100
    status, _, body = raw_request(local_server, "POST", f"{API}/conversations/{conv}/messages",
                                  {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                                  chunks=chunks, chunked=True, timeout=60)
    assert status == 413, body
    assert "91 MB" in json.loads(body)["detail"]
    assert api.get(f"{API}/conversations/{conv}").json()["nodes"] == []


def test_one_image_over_30_mb_is_413(api):
    conv = new_conversation(api)
    big = PNG + b"\0" * (30 * 2**20)
    r = send(api, conv, "make it blue", images=[("big.png", big)])
    assert r.status_code == 413
    assert "30 MB" in r.json()["detail"]


@pytest.mark.parametrize("name,data,status,words", [
    ("report.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", 415, "not a PNG, JPEG or WebP"),
    ("notes.png", b"just some text, not an image", 415, "not a PNG, JPEG or WebP"),
    ("cut.png", fixture_bytes("coffee.png")[:3000], 422, "truncated"),
    ("bomb.png", pixel_bomb(), 422, "too large"),
    ("empty.png", b"", 422, "empty"),
    ("damaged.jpg", damaged_jpeg(), 422, "truncated or damaged"),
])
def test_refused_uploads_keep_nothing(api, name, data, status, words):
    conv = new_conversation(api)
    ok = ("fine.png", png_bytes())
    r = send(api, conv, "make it blue", images=[ok, (name, data)])
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and name in r.json()["detail"]
    assert api.get(f"{API}/conversations/{conv}").json()["nodes"] == []


def test_an_empty_file_on_chainlits_upload_route_is_refused_with_a_message(api):
    r = api.post("/project/file", params={"session_id": "no-such-session"},
                 files={"file": ("empty.png", b"", "image/png")})
    assert r.status_code == 400, r.text
    assert "empty.png is empty" in r.json()["detail"] and "PNG, JPEG or WebP" in r.json()["detail"]
    r = api.post("/project/file", params={"session_id": "no-such-session"},
                 files={"file": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 404  # a real file goes on to Chainlit's own checks


def test_a_png_with_a_large_colour_profile_is_accepted(api):
    conv = new_conversation(api)
    r = send(api, conv, "", images=[("profile.png", png_with_big_profile())])
    assert r.status_code in (200, 202), r.text
    nodes = api.get(f"{API}/conversations/{conv}").json()["nodes"]
    assert len(nodes) == 1 and nodes[0]["width"] == 64


@pytest.mark.parametrize("method, path, body", [
    ("post", "/conversations", {"title": "\ud800x"}),
    ("patch", "/conversations/{conv}", {"title": "a\udfffb"}),
    ("post", "/conversations/{conv}/messages", {"text": "make it \ud83d blue"}),
])
def test_a_lone_surrogate_in_json_is_a_422(api, method, path, body):
    conv = new_conversation(api)
    # Sent as the escaped JSON a client would write; httpx would refuse to encode it.
    raw = json.dumps(body).encode()
    r = api.request(method.upper(), f"{API}{path.format(conv=conv)}", content=raw,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "not text" in r.json()["detail"] and "send valid Unicode" in r.json()["detail"]


def test_malformed_messages(api):
    conv = new_conversation(api)
    url = f"{API}/conversations/{conv}/messages"
    four = [("images", (f"{i}.png", png_bytes(), "image/png")) for i in range(4)]
    r = api.post(url, data={"text": "x"}, files=four)
    assert r.status_code == 422 and "at most 3" in r.json()["detail"]
    r = api.post(url, data={"text": "x"}, files=[("image", ("a.png", png_bytes(), "image/png"))])
    assert r.status_code == 422 and "'images'" in r.json()["detail"]
    assert api.post(url, content=b"make it blue", headers={"content-type": "text/plain"}).status_code == 415
    assert api.post(url).status_code == 415
    assert api.post(url, content=b"{oops", headers={"content-type": "application/json"}).status_code == 422
    assert api.post(url, json={"text": 5}).status_code == 422
    assert api.post(url, json={"words": "hi"}).status_code == 422
    assert api.post(url, json=["hi"]).status_code == 422
    assert api.post(url, json={"text": "x" * 10_001}).status_code == 422
    assert api.post(url, json={"text": "make it\x00 blue"}).status_code == 422
    r = api.post(url, data={f"f{i}": "1" for i in range(40)})
    assert r.status_code == 422 and "Too many fields" in r.json()["detail"]
    r = api.post(url, content=b"x", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 422 and "boundary" in r.json()["detail"]
    assert api.post(url, data={"text": "x" * 10_001}).status_code == 422
    r = api.post(url, content=b"--nope\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code in (200, 422)  # an empty form (help) or refused: never a 500
    assert api.get(f"{API}/conversations/{conv}").json()["nodes"] == []


def test_no_route_fetches_urls_or_paths(api):
    conv = new_conversation(api)
    url = f"{API}/conversations/{conv}/messages"
    r = api.post(url, data={"text": "edit", "images": "/etc/passwd"})
    assert r.status_code == 422
    r = api.post(url, data={"text": "edit", "images": "http://127.0.0.1/x.png"})
    assert r.status_code == 422
    assert api.get(f"{API}/conversations/{conv}").json()["nodes"] == []


# ---- messages that need no model ------------------------------------------------------------


def test_commands_answer_200_and_refusals_422(api):
    conv = new_conversation(api)
    r = send(api, conv, images=[("first.png", png_bytes(color=(10, 20, 30)))])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["jobs"] == [] and out["uploads"] == [1] and out["head"] == 1
    assert out["node"]["kind"] == "upload" and out["node"]["instruction"] == "first.png"

    help_ = send(api, conv, "/help")
    assert help_.status_code == 200 and "/undo" in help_.json()["message"]
    history = send(api, conv, "/history")
    assert history.status_code == 200 and history.json()["tree"] == f"{API}/conversations/{conv}"
    export = send(api, conv, "/export jpeg")
    assert export.status_code == 200
    link = export.json()["export"]
    assert link == f"{API}/conversations/{conv}/export?format=jpeg&node=1"
    assert api.get(link).content[:3] == b"\xff\xd8\xff"

    for text, words in [("/undo", "Nothing to undo"), ("/goto 9", "no #9"), ("/frobnicate", "")]:
        r = send(api, conv, text)
        assert r.status_code == 422, (text, r.text)
        assert words in r.json()["detail"]


# ---- the whole flow -------------------------------------------------------------------------


def test_full_flow(local_server, api):
    conv = new_conversation(api, "Flow")
    photo = png_bytes((96, 64), (12, 200, 99))  # unique bytes: its blob goes with the conversation
    r = send(api, conv, "make the background darker", images=[("photo.png", photo)])
    assert r.status_code == 202, r.text
    out = r.json()
    assert len(out["jobs"]) == 1 and out["uploads"] == [1]
    job_id = out["jobs"][0]
    assert r.headers["location"] == out["job_urls"][0] == f"{API}/jobs/{job_id}"

    job = poll_job(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["error"] is None and job["node"] == 2 and job["kind"] == "edit"
    assert job["image_url"] == f"{API}/conversations/{conv}/nodes/2/image"

    tree = api.get(f"{API}/conversations/{conv}").json()
    assert tree["head"] == 2 and tree["roots"] == [1] and tree["title"] == "Flow"
    nodes = {n["number"]: n for n in tree["nodes"]}
    assert nodes[1]["kind"] == "upload" and nodes[1]["children"] == [2]
    assert nodes[2]["kind"] == "edit" and nodes[2]["parent"] == 1 and nodes[2]["inputs"] == [1]
    assert nodes[2]["instruction"] == "make the background darker"
    assert set(nodes[2]) >= {"number", "parent", "kind", "inputs", "instruction", "prompt", "params",
                             "width", "height", "sha256", "created_at", "image_url"}
    assert nodes[2]["params"]["request"]["op"] == "edit"

    img = api.get(job["image_url"])
    assert img.status_code == 200 and img.content.startswith(PNG)
    assert img.headers["content-type"] == "image/png"
    assert img.headers["x-content-type-options"] == "nosniff"

    png = api.get(f"{API}/conversations/{conv}/export", params={"format": "png", "node": 2})
    assert png.status_code == 200 and png.content.startswith(PNG)
    assert 'filename="flow-2.png"' in png.headers["content-disposition"]
    webp = api.get(f"{API}/conversations/{conv}/export", params={"format": "webp"})
    assert webp.content[:4] == b"RIFF" and webp.content[8:12] == b"WEBP"
    history = api.get(f"{API}/conversations/{conv}/export", params={"format": "history"})
    assert history.status_code == 200 and history.headers["content-type"] == "application/zip"
    assert 'filename="flow-history.zip"' in history.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(history.content)) as z:
        recipe = json.loads(z.read("recipe.json"))
        assert "contact-sheet.png" in z.namelist()
    assert recipe["conversation"]["id"] == conv
    assert [n["sha256"] for n in recipe["nodes"]] == [nodes[1]["sha256"], nodes[2]["sha256"]]

    # A text-only follow-up edits the head.
    r = send(api, conv, "add rain")
    assert r.status_code == 202
    job = poll_job(api, r.json()["jobs"][0])
    assert job["status"] == "succeeded" and job["node"] == 3

    shas = [n["sha256"] for n in api.get(f"{API}/conversations/{conv}").json()["nodes"]]
    blob = local_server.data_dir / "blobs" / shas[0][:2] / shas[0]
    assert blob.exists()
    r = api.delete(f"{API}/conversations/{conv}")
    assert r.status_code == 204
    assert not blob.exists()  # the upload's file was used by nothing else
    for path in (f"/conversations/{conv}", f"/conversations/{conv}/nodes/2/image",
                 f"/conversations/{conv}/export", f"/jobs/{job_id}"):
        assert api.get(API + path).status_code == 404, path
    assert conv not in [c["id"] for c in api.get(f"{API}/conversations").json()]
    assert api.delete(f"{API}/conversations/{conv}").status_code == 404


def test_generate_from_text_in_an_empty_conversation(api):
    conv = new_conversation(api)
    r = send(api, conv, "a red fox sitting in fresh snow")
    assert r.status_code == 202, r.text
    job = poll_job(api, r.json()["jobs"][0])
    assert job["status"] == "succeeded", job
    tree = api.get(f"{API}/conversations/{conv}").json()
    assert [n["kind"] for n in tree["nodes"]] == ["generate"]
    assert tree["title"] == "a red fox sitting in fresh snow"  # titled by the first request
