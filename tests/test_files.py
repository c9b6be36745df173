"""harness.files.writable_dir_problem: the one probe behind every writable-folder check."""

from __future__ import annotations

from pathlib import Path

from harness.files import writable_dir_problem


def test_a_writable_folder_has_no_problem_and_nothing_is_left(tmp_path: Path) -> None:
    assert writable_dir_problem(tmp_path) is None
    assert writable_dir_problem(tmp_path / "new" / "deeper") is None  # creatable
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []
    assert writable_dir_problem(tmp_path / "made", create=True) is None
    assert (tmp_path / "made").is_dir() and list((tmp_path / "made").iterdir()) == []


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert writable_dir_problem(blocker) == "is a file, not a folder"
    for create in (False, True):
        problem = writable_dir_problem(blocker / "sub" / "dir", create=create)
        assert problem == f"cannot be created: {blocker} is not a folder"
    assert blocker.read_text() == "not a folder"
