"""atomic_path: the destination appears whole or not at all."""

import pytest

from engramlab.fileio import atomic_path


def test_success_replaces_the_destination_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "sub" / "x.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp != dest
        tmp.write_bytes(b"new")
        assert dest.read_bytes() == b"old"  # not visible until the block ends
    assert dest.read_bytes() == b"new"
    assert [p.name for p in dest.parent.iterdir()] == ["x.bin"]


def test_failure_keeps_the_old_destination_and_deletes_the_temporary(tmp_path):
    dest = tmp_path / "x.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_creates_missing_parent_folders(tmp_path):
    dest = tmp_path / "a" / "b" / "c.txt"
    with atomic_path(dest) as tmp:
        tmp.write_text("hi")
    assert dest.read_text() == "hi"


def test_the_file_gets_the_mode_a_plain_open_would_give(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"data")
        (tmp_path / "plain.bin").write_bytes(b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == (tmp_path / "plain.bin").stat().st_mode & 0o777 == 0o640
