"""snlad.files: path confinement (every path read from a data file, config or run file) and the folder lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from snlad.errors import SnladError
from snlad.files import confined, exclusive_lock


@pytest.mark.parametrize("name", ["a.png", "widget/Data/Images/Normal/0.png", "a/../b.png", "./a/b.png", "a//b.png"])
def test_a_relative_path_inside_its_root_is_kept(tmp_path: Path, name: str) -> None:
    path = confined(tmp_path, name, "split file")
    assert path.is_relative_to(tmp_path) and path != tmp_path


@pytest.mark.parametrize("name", ["../secret.png", "a/../../b.png", "/etc/passwd", "", ".", "..", "a/\0b"])
def test_a_path_that_leaves_its_root_is_refused_by_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(SnladError, match=r"split file line 3: .* is not a path inside"):
        confined(tmp_path, name, "split file line 3")


@pytest.mark.parametrize("name", ["a/b", "./a", "a/", "..", "../other"])
def test_a_single_folder_name_has_no_separators(tmp_path: Path, name: str) -> None:
    with pytest.raises(SnladError, match="is not a folder name inside"):
        confined(tmp_path, name, "run.json names category", single=True)
    assert confined(tmp_path, "bottle", "run.json names category", single=True) == tmp_path / "bottle"


def test_a_symlink_inside_the_root_is_the_users_choice(tmp_path: Path) -> None:
    """The check is on the name written in the file, not on where a symlink of the user's leads."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    assert confined(tmp_path / "root", "link/a.png", "split file") == tmp_path / "root" / "link" / "a.png"


def test_a_second_holder_of_a_folder_lock_is_refused_naming_the_first(tmp_path: Path) -> None:
    with exclusive_lock(tmp_path / "out", "snlad predict"):
        with pytest.raises(SnladError, match=r"out is in use by another snlad predict \(pid \d+\)"):
            with exclusive_lock(tmp_path / "out", "snlad predict"):
                pass
    with exclusive_lock(tmp_path / "out", "snlad predict"):  # released: free again
        pass
