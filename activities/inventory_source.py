"""Reading an inventory through Ansible's own loaders, strictly.

Ansible only warns about a file it cannot parse and goes on with an empty inventory; a plan must
not, so every plugin's failure is recorded and becomes an `InventoryError` naming the file and
the reason. Vault-encrypted vars files are skipped (their names are unknown without the
password) rather than failing the load. Variable names are worked out here, once; values are
never kept.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import AnsibleVaultError
from ansible.plugins.vars import host_group_vars
from ansible.vars.plugins import get_vars_from_inventory_sources

Fingerprint = tuple[tuple[str, int, int], ...]
_BOOKKEEPING_VARS = frozenset({"inventory_file", "inventory_dir"})  # Ansible's own, not the inventory's


class InventoryError(Exception):
    """The inventory at `path` cannot be loaded, or something asked of it has no answer."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"inventory {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Parsed:
    path: Path
    manager: InventoryManager
    var_names: dict[str, frozenset[str]]
    vaulted: tuple[Path, ...]


def reason_of(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "message", None) or exc).split())


class _RecordingPlugin:
    """An inventory plugin that keeps why it rejected a source: Ansible only warns on stderr."""

    def __init__(self, plugin: Any, failures: dict[str, list[tuple[str, str]]]) -> None:
        self._plugin = plugin
        self._failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugin, name)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        try:
            self._plugin.parse(inventory, loader, path, cache=cache)
        except Exception as exc:
            name = str(getattr(self._plugin, "_load_name", type(self._plugin).__name__))
            self._failures.setdefault(str(path), []).append((name, reason_of(exc)))
            raise


class _StrictInventoryManager(InventoryManager):  # type: ignore[misc]  # ansible-core ships no types
    """An InventoryManager that fails where Ansible only warns.

    Ansible warns about a source it cannot parse and goes on with the rest, or with an empty
    inventory; a plan built on half an inventory would show the approver the wrong hosts.
    """

    def __init__(self, loader: DataLoader, source: str) -> None:
        self._failures: dict[str, list[tuple[str, str]]] = {}  # set first: __init__ parses
        super().__init__(loader, sources=[source])

    def _fetch_inventory_plugins(self) -> list[Any]:
        return [_RecordingPlugin(plugin, self._failures) for plugin in super()._fetch_inventory_plugins()]

    def parse_source(self, source: str, cache: bool = False) -> bool:
        # For a directory Ansible calls this again for each entry, so one bad file fails it all.
        if bool(super().parse_source(source, cache=cache)):
            return True
        by_reason: dict[str, list[str]] = {}
        for plugin, reason in self._failures.get(str(source), []):
            by_reason.setdefault(reason, []).append(plugin)
        if source in self._loader.vaulted:
            reason = "it is vault-encrypted and signoff reads inventories without the vault password"
        elif by_reason:
            reason = "; ".join(f"{', '.join(plugins)}: {why}" for why, plugins in by_reason.items())
        elif os.path.isdir(source):
            reason = "holds no inventory file"
        else:
            reason = "no enabled inventory plugin accepts it"
        raise InventoryError(Path(source), f"cannot be parsed as an inventory ({reason})")


def read(path: Path) -> Parsed:
    """Parse the inventory at `path` with Ansible; InventoryError names the file and the reason."""
    if not path.exists():
        raise InventoryError(path, "does not exist")
    loader = _VaultTolerantLoader()
    # host_group_vars remembers, for the life of the process, which group_vars/host_vars files
    # exist (and which directories do not); a reload must see files added since. Loads are
    # serialised by _LoadCache, so no parse is running while these are cleared.
    host_group_vars.FOUND.clear()
    host_group_vars.NAK.clear()
    try:
        manager = _StrictInventoryManager(loader, str(path))
        # Created now so that it is always called "localhost" (Ansible names it after the
        # first spelling asked for) and its variable names are known like any host's.
        implicit = None if "localhost" in manager.hosts else manager.get_host("localhost")
        var_names = _var_names(loader, str(path), manager, implicit)
    except AnsibleError as exc:
        raise InventoryError(path, reason_of(exc)) from exc
    return Parsed(path, manager, var_names, tuple(Path(file) for file in dict.fromkeys(loader.vaulted)))


class _VaultTolerantLoader(DataLoader):  # type: ignore[misc]  # ansible-core ships no types
    """A DataLoader that passes over vault-encrypted files instead of failing on them.

    Planning has no vault password (ansible-playbook gets one when it runs), and an inventory
    with group_vars/all/vault.yml is ordinary; only the names inside such a file stay unknown.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vaulted: list[str] = []

    def load_from_file(self, file_name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().load_from_file(file_name, *args, **kwargs)
        except AnsibleVaultError:
            self.vaulted.append(str(file_name))
            return None


def _var_names(
    loader: _VaultTolerantLoader, source: str, manager: InventoryManager, implicit: Any
) -> dict[str, frozenset[str]]:
    """Per host, the names of inventory variables that reach it: its own and its groups'.

    Vars plugins (group_vars/ and host_vars/ beside the inventory) run at the "task" stage, as
    they do for ansible-playbook under the default RUN_VARS_PLUGINS=demand; entity.vars holds
    what the inventory files set, and whatever plugins ran at the "inventory" stage.
    """

    def own(entity: Any) -> frozenset[str]:
        try:
            plugin_vars = get_vars_from_inventory_sources(loader, [source], [entity], "task")
        except AnsibleError as exc:  # Ansible's message does not say whose variables failed
            raise InventoryError(Path(source), f"variables of {entity.name!r}: {reason_of(exc)}") from exc
        return frozenset(str(name) for name in (*entity.vars, *plugin_vars))

    groups = {name: own(group) for name, group in manager.groups.items()}
    hosts = list(manager.hosts.values()) + ([implicit] if implicit is not None else [])
    names: dict[str, frozenset[str]] = {}
    for host in hosts:
        # The implicit localhost is in no group, yet ansible-playbook gives it the `all` vars.
        inherited = {str(group.name) for group in host.get_groups()} | {"all"}
        names[str(host.name)] = own(host).union(*(groups[group] for group in inherited)) - _BOOKKEEPING_VARS
    return names


def fingerprint(path: Path) -> Fingerprint:
    """Path, mtime and size of every file the inventory is read from."""
    roots = [path] if path.is_dir() else [path, path.parent / "group_vars", path.parent / "host_vars"]
    files = [root for root in roots if root.is_file()]
    for root in roots:
        for dirpath, _dirnames, filenames in os.walk(root):
            files.extend(Path(dirpath, filename) for filename in filenames)
    stamps = []
    for file in files:
        with contextlib.suppress(FileNotFoundError):  # deleted while we walked: the next load sees it
            stat = file.stat()
            stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(stamps))
