"""File-system helpers shared by every writer: nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, else it is removed."""
    path = Path(path)
    if not path.parent.is_dir():  # else the error would name the hidden temporary file
        raise FileNotFoundError(f"{path.parent}: output folder does not exist")
    # The temporary name adds about 15 bytes to the output's: a shortened name keeps it within the
    # file system's 255, so that an output with a long (legal) name can still be written.
    name = path.name.encode()[:200].decode(errors="ignore")  # a character cut in two is dropped
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=path.parent or ".")
    except OSError as error:  # e.g. a read-only folder: name the output, not the temporary file
        raise _naming(error, path) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        # On disk before the rename: else a power cut soon after could leave `path` empty, the old
        # file already replaced and the new one's data not yet written.
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.filename == tmp:  # e.g. the disk filled while writing
            raise _naming(error, path) from None
        raise


def _naming(error: OSError, path: Path) -> OSError:
    """The same error about `path`: the user knows the output, not its hidden temporary file."""
    return type(error)(error.errno, error.strerror, str(path))


def same_path(recorded: str | None, given: str) -> bool:
    """Whether a path given again (on resume) leads where the recorded one does, from here."""
    if recorded is not None and Path(given).exists():
        return Path(recorded).resolve() == Path(given).resolve()
    return recorded == given


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether both paths exist and are one file (also through links), so writing `a` would destroy `b`."""
    return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_folder(path: str | Path) -> Path:
    """Create the folder `path` (and its parents) before any work that will write there, so that a
    folder that cannot be made is said at once, not after hours of work; ValueError naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder; choose another output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{path}: cannot create this output folder ({error.strerror})") from None
    return path
