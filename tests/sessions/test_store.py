"""The edit-history store: numbering, head moves, branches, races, reopening, jobs."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from sessions import (
    HistoryError,
    JobStateError,
    NotFound,
    NothingToRedo,
    NothingToUndo,
    Store,
)


def img(color, size=(16, 12)):
    return Image.new("RGB", size, color)


def chain(store, conv, n):
    """An upload followed by n-1 edits, each of the previous one."""
    store.add_node(conv, img((0, 0, 0)), kind="upload")
    for i in range(2, n + 1):
        store.add_node(conv, img((i * 20, 0, 0)), kind="edit", parent=i - 1, inputs=[i - 1],
                       instruction=f"step {i}", prompt=f"step {i}", params={"seed": i})


def test_numbers_run_per_conversation(store):
    a = store.create_conversation(owner="ann").id
    b = store.create_conversation(owner="ann").id
    assert [store.add_node(a, img("red"), kind="upload").number for _ in range(3)] == [1, 2, 3]
    assert store.add_node(b, img("red"), kind="upload").number == 1


def test_node_fields(store):
    conv = store.create_conversation(owner="ann", title="cats").id
    store.add_node(conv, img("red"), kind="upload")
    store.add_node(conv, img("blue"), kind="upload")
    n = store.add_node(conv, img("green", (30, 20)), kind="edit", parent=1, inputs=[1, 2],
                       instruction="put the hat on him", prompt="Put the hat from Picture 2 on him",
                       params={"seed": 42, "steps": 4})
    got = store.node(conv, 3)
    assert got == n
    assert (got.parent_number, got.kind, got.width, got.height) == (1, "edit", 30, 20)
    assert got.input_numbers == [1, 2]
    assert got.params == {"seed": 42, "steps": 4}
    assert got.instruction == "put the hat on him" and got.prompt.startswith("Put the hat")
    assert len(got.sha256) == 64 and got.created_at is not None
    assert store.conversation(conv).title == "cats"


def test_add_node_moves_head_unless_told_not_to(store):
    conv = store.create_conversation(owner="ann").id
    assert store.head(conv) is None
    store.add_node(conv, img("red"), kind="upload")
    assert store.head(conv).number == 1
    store.add_node(conv, img("blue"), kind="edit", parent=1, move_head=False)
    assert store.head(conv).number == 1


def test_image_round_trip(store):
    conv = store.create_conversation(owner="ann").id
    src = img((10, 200, 30), (40, 30))
    n = store.add_node(conv, src, kind="upload")
    out = store.image(n)
    assert out.size == (40, 30) and out.getpixel((5, 5)) == (10, 200, 30)


def test_lineage_and_nodes(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 4)
    assert [n.number for n in store.lineage(conv)] == [1, 2, 3, 4]
    assert [n.number for n in store.lineage(conv, 3)] == [1, 2, 3]
    assert [n.number for n in store.nodes(conv)] == [1, 2, 3, 4]


def test_undo_redo_walk_back_the_same_path(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 4)
    assert store.undo(conv).number == 3
    assert store.undo(conv).number == 2
    assert store.redo(conv).number == 3
    assert store.redo(conv).number == 4
    with pytest.raises(NothingToRedo):
        store.redo(conv)
    assert store.undo(conv, 3).number == 1
    with pytest.raises(NothingToUndo, match="#1 is where"):
        store.undo(conv)
    assert len(store.nodes(conv)) == 4  # nothing deleted


def test_undo_more_steps_than_there_are(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 3)
    with pytest.raises(NothingToUndo, match="Only 2 step"):
        store.undo(conv, 5)
    assert store.head(conv).number == 3  # a refused undo moves nothing


def test_undo_on_empty_conversation(store):
    conv = store.create_conversation(owner="ann").id
    with pytest.raises(NothingToUndo):
        store.undo(conv)
    with pytest.raises(NothingToRedo):
        store.redo(conv)


def test_new_edit_clears_redo(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 3)
    store.undo(conv)
    store.add_node(conv, img("white"), kind="edit", parent=2, inputs=[2])
    with pytest.raises(NothingToRedo):
        store.redo(conv)


def test_undo_redo_across_a_branch_point(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 3)  # 1 - 2 - 3
    store.checkout(conv, 2)
    store.add_node(conv, img("cyan"), kind="edit", parent=2, inputs=[2])  # 4 on 2
    store.add_node(conv, img("pink"), kind="edit", parent=4, inputs=[4])  # 5 on 4
    assert store.undo(conv).number == 4
    assert store.undo(conv).number == 2
    # redo goes back down the branch undo came up (4, 5), not the older child 3
    assert store.redo(conv).number == 4
    assert store.redo(conv).number == 5


def test_checkout_then_edit_makes_second_branch(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 3)
    assert store.checkout(conv, 1).number == 1
    store.add_node(conv, img("yellow"), kind="edit", parent=1, inputs=[1], instruction="night")
    assert [n.number for n in store.lineage(conv)] == [1, 4]
    assert [n.number for n in store.lineage(conv, 3)] == [1, 2, 3]
    assert sorted(n.number for n in store.children(conv, 1)) == [2, 4]
    assert store.image(store.node(conv, 3)).getpixel((0, 0)) == (60, 0, 0)


def test_unknown_number_message(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 5)
    with pytest.raises(NotFound) as e:
        store.checkout(conv, 12)
    assert str(e.value) == "There is no #12 in this conversation; the latest is #5."
    with pytest.raises(NotFound, match="#12"):
        store.node(conv, 12)
    with pytest.raises(NotFound, match="#9"):
        store.add_node(conv, img("red"), kind="edit", parent=9)
    assert store.head(conv).number == 5


def test_number_of_another_conversation(store):
    a = store.create_conversation(owner="ann").id
    b = store.create_conversation(owner="ann").id
    chain(store, a, 3)
    store.add_node(b, img("red"), kind="upload")
    with pytest.raises(NotFound, match="There is no #3 in this conversation; the latest is #1"):
        store.checkout(b, 3)
    with pytest.raises(NotFound):
        store.add_node(b, img("red"), kind="edit", parent=1, inputs=[3])
    assert store.head(b).number == 1


def test_errors_are_one_family(store):
    for cls in (NotFound, NothingToUndo, NothingToRedo, JobStateError):
        assert issubclass(cls, HistoryError)
    with pytest.raises(HistoryError):
        store.conversation("nope")


def test_owner_check_hides_others_conversations(store):
    conv = store.create_conversation(owner="ann").id
    assert store.conversation(conv, owner="ann").owner == "ann"
    with pytest.raises(NotFound, match="no such conversation"):
        store.conversation(conv, owner="bob")
    assert [c.id for c in store.conversations(owner="ann")] == [conv]
    assert store.conversations(owner="bob") == []


def test_head_moves_racing_from_two_threads(tmp_path):
    s = Store.open(database_url=f"sqlite:///{tmp_path}/race.db", blob_dir=tmp_path / "blobs")
    conv = s.create_conversation(owner="ann").id
    other = s.create_conversation(owner="ann").id
    chain(s, conv, 6)
    chain(s, other, 9)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def mover(numbers):
        barrier.wait()
        try:
            for i in range(40):
                n = numbers[i % len(numbers)]
                s.checkout(conv, n)
                try:
                    s.undo(conv)
                except NothingToUndo:
                    pass
                try:
                    s.redo(conv)
                except NothingToRedo:
                    pass
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=mover, args=([1, 3, 5],)),
               threading.Thread(target=mover, args=([2, 4, 6],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    head = s.head(conv)
    assert head is not None and 1 <= head.number <= 6
    assert head.conversation_id == conv
    assert s.head(other).number == 9  # the other conversation never moved
    # The redo path, if any, is still a valid walk down from the head.
    path = s.conversation(conv).redo_path
    cur = head.number
    for n in reversed(path):
        assert s.node(conv, n).parent_number == cur
        cur = n


def test_concurrent_adds_get_distinct_numbers(tmp_path):
    s = Store.open(database_url=f"sqlite:///{tmp_path}/adds.db", blob_dir=tmp_path / "blobs")
    conv = s.create_conversation(owner="ann").id
    numbers: list[int] = []
    lock = threading.Lock()

    def adder(k):
        for i in range(10):
            n = s.add_node(conv, img((k, i, 0)), kind="upload").number
            with lock:
                numbers.append(n)

    threads = [threading.Thread(target=adder, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(numbers) == list(range(1, 31))


def test_reopen_gives_same_tree_images_and_head(tmp_path):
    url, blobs = f"sqlite:///{tmp_path}/h.db", tmp_path / "blobs"
    s = Store.open(database_url=url, blob_dir=blobs)
    conv = s.create_conversation(owner="ann", title="t").id
    chain(s, conv, 3)
    s.checkout(conv, 1)
    s.add_node(conv, img("navy"), kind="edit", parent=1, inputs=[1])
    s.undo(conv)
    before = (s.nodes(conv), s.head(conv), s.conversation(conv).redo_path,
              [s.image(n).tobytes() for n in s.nodes(conv)])
    s.close()
    s2 = Store.open(database_url=url, blob_dir=blobs)
    after = (s2.nodes(conv), s2.head(conv), s2.conversation(conv).redo_path,
             [s2.image(n).tobytes() for n in s2.nodes(conv)])
    assert after == before
    assert s2.redo(conv).number == 4  # the redo path survived the restart too
    assert s2.add_node(conv, img("red"), kind="upload").number == 5


def test_numbers_never_reused_after_delete_of_another(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 2)
    assert store.add_node(conv, img("red"), kind="upload").number == 3


def test_rename_and_settings(store):
    conv = store.create_conversation(owner="ann").id
    assert store.rename_conversation(conv, "Rainy street").title == "Rainy street"
    assert store.update_settings(conv, {"steps": 8}).settings == {"steps": 8}
    assert store.conversation(conv).settings == {"steps": 8}


def test_ensure_conversation_is_idempotent_and_owner_checked(store):
    a = store.ensure_conversation("thread-1", owner="ann", title="first")
    b = store.ensure_conversation("thread-1", owner="ann")
    assert a.id == b.id == "thread-1" and b.title == "first"
    with pytest.raises(NotFound):
        store.ensure_conversation("thread-1", owner="bob")
    assert store.conversation("thread-1").owner == "ann"


def test_meta_merges(store):
    conv = store.create_conversation(owner="ann").id
    store.update_meta(conv, {"a": 1})
    assert store.update_meta(conv, {"b": 2}).meta == {"a": 1, "b": 2}


def test_redo_several_steps_is_all_or_nothing(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 4)
    store.undo(conv, 3)
    with pytest.raises(NothingToRedo, match="Only 3 step"):
        store.redo(conv, 5)
    assert store.head(conv).number == 1  # a refused redo moves nothing
    assert store.redo(conv, 2).number == 3
    assert store.redo(conv).number == 4


def test_huge_or_odd_numbers_name_no_node(store):
    conv = store.create_conversation(owner="ann").id
    chain(store, conv, 2)
    for n in (0, -1, 2**31, 10**20):
        with pytest.raises(NotFound, match="latest is #2"):
            store.node(conv, n)
        with pytest.raises(NotFound):
            store.checkout(conv, n)


def test_delete_rewrites_a_blob_another_conversation_is_adding(store):
    keep = store.create_conversation(owner="ann").id
    gone = store.create_conversation(owner="ann").id
    pic = Image.new("RGB", (8, 8), "purple")
    node = store.add_node(gone, pic, kind="upload")
    # Another conversation's write of the same picture found the file present, then
    # the deletion removed it before that conversation's row was written.
    real_put = store.blobs.put

    def put_then_lose_it(data):
        key = real_put(data)
        store.blobs.put = real_put  # only this once
        store.delete_conversation(gone)
        return key

    store.blobs.put = put_then_lose_it
    try:
        kept = store.add_node(keep, pic, kind="upload")
    finally:
        store.blobs.put = real_put
    assert kept.sha256 == node.sha256
    assert store.image(kept).getpixel((0, 0)) == (128, 0, 128)


def test_in_memory_store_is_safe_across_threads(tmp_path):
    s = Store.open(database_url="sqlite://", blob_dir=tmp_path / "blobs")
    conv = s.create_conversation(owner="ann").id
    errors = []

    def work(k):
        try:
            for i in range(8):
                s.add_node(conv, img((k, i, 1)), kind="upload")
                s.create_job(conv, kind="edit")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(s.nodes(conv)) == 32
