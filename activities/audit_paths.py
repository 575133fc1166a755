"""Where the audit writes in git: request and task ids as bounded, safe file names, and the
check every path passes before git stores it (only under `.audit/`, nothing git or a shell could
read as more than a name)."""

from __future__ import annotations

import errno
import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
_PREFIX_CHARS = 60
# OS errors a retry cannot mend: the audit path itself cannot be written
PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EINVAL})


def safe_name(name: str) -> str:
    """A workflow or task id as a file name. Ids may be up to 1,000 characters of anything
    (slashes, spaces, `..`, any script): a plain short id is used as it is; any other becomes a
    readable prefix and a hash of the whole id, so it is bounded, unique and stays in .audit/.
    Never starts with `-` or `.`."""
    if _PLAIN.match(name):
        return name
    prefix = _UNSAFE.sub("_", name)[:_PREFIX_CHARS].lstrip("._-")
    digest = hashlib.sha256(name.encode(errors="surrogatepass")).hexdigest()[:16]
    return f"{prefix}-{digest}" if prefix else digest


def check_path(path: str) -> str:
    """`path` if git may store it for us: relative, under `.audit/`, and no segment that is
    empty, `.`, `..`, `.git`, starts with `-` or holds a backslash or a control character.
    Else ValueError."""
    parts = path.split("/") if isinstance(path, str) else []
    if len(parts) < 2 or parts[0] != ".audit":
        raise ValueError(f"audit path {path!r}: must be a relative path under .audit/")
    for part in parts[1:]:
        if part in ("", ".", "..") or part.startswith("-") or part.lower() == ".git" or "\\" in part:
            raise ValueError(f"audit path {path!r}: segment {part!r} is not allowed")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in part):
            raise ValueError(f"audit path {path!r}: control characters are not allowed")
    return path
