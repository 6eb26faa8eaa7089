"""Store stage: the only package that imports icechunk. A CubePlan becomes a committed repository of virtual
references (:func:`write_plan`), and opens back as xarray objects (:func:`open_datatree`, :func:`open_level`).

Modules, each importing only the ones before it: ``containers`` (a virtual chunk container for exactly each of the
sources' prefixes, its credentials, the ``allow`` check), ``repo`` (opening or creating a repository), ``layout``
(what a cube stores, described once: :class:`CubeMetadata`, :class:`ArrayLayout`, the coordinates of a level, the
source table), ``nodes`` (many small groups written at once, as ``to_zarr`` writes each), ``coords`` (the
coordinates read at open, kept in the array node and opened without reading them), ``guard`` (the store every read
goes through: retries, and errors that name the source and what to do), ``scratch`` (the branches a build writes
before its one commit, held by a lease), ``stored`` (what a committed cube says about how it was made,
:class:`StoredCube`, its source table's hrefs checked against the containers it declares) and ``tiles`` (a union
level's tile table read back, every href it names checked likewise and against ``allow=``, before any request),
``write`` (one commit per build or refresh, on top of a big build's stages) and ``read`` (:class:`Version`,
:class:`OpenOptions`, opening a cube, an array or one of its levels, unions included), then ``append`` (a refresh
whose new items come after the cube's last date: only they are written).
"""

from stackcube.store.append import Appended, Commit, append_steps, append_to
from stackcube.store.layout import (
    ArrayLayout,
    CubeMetadata,
    Level,
    StoredRow,
    searched_now,
    source_row,
    updated_of,
)
from stackcube.store.read import (
    OpenArgs,
    OpenOptions,
    ReadArgs,
    Version,
    open_datatree,
    open_level,
    open_level_dataset,
    read_metadata,
)
from stackcube.store.repo import (
    ONE_REQUEST,
    RepoLike,
    branch_head,
    branch_tip,
    check_allowed,
    container_prefixes,
    exists,
    memory_repository,
    open_repository,
    quiet_logs,
    readonly_session,
    version_not_found,
)
from stackcube.store.stored import StoredCube, read_stored
from stackcube.store.write import check_target, write_plan

__all__ = [
    "branch_head",
    "branch_tip",
    "ONE_REQUEST",
    "Appended",
    "Commit",
    "ArrayLayout",
    "CubeMetadata",
    "Level",
    "OpenArgs",
    "OpenOptions",
    "ReadArgs",
    "RepoLike",
    "StoredCube",
    "StoredRow",
    "Version",
    "append_steps",
    "append_to",
    "check_allowed",
    "check_target",
    "container_prefixes",
    "exists",
    "memory_repository",
    "open_datatree",
    "open_level",
    "open_level_dataset",
    "open_repository",
    "quiet_logs",
    "read_metadata",
    "read_stored",
    "readonly_session",
    "searched_now",
    "source_row",
    "updated_of",
    "version_not_found",
    "write_plan",
]
