"""Parameters of the ``label_beta`` stage: one frozen, typed dataclass checked before any work.

``params.yaml: label_beta`` is parsed by :func:`qmlrp.params.parse_section`, so an unknown key
(``bais:``, ``cout:``), a wrong type (``count: many``) or an impossible value (``grid_level: 12``)
stops the stage with one line naming the key, before any molecule is read or computed. The
defaults below are the only place a default is stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from qmlrp.cluster import Jobqueue
from qmlrp.errors import QmlrpError
from qmlrp.labels.beta import Level
from qmlrp.params import DEFAULT_PARAMS, load_params, parse_section

__all__ = ["Jobqueue", "Sanity", "LabelBetaParams", "read_section", "load_label_beta_params",
           "SECTION"]

SECTION = "label_beta"

#: Default label folder: git-tracked, one sub-folder per level of theory (see labels/beta/README.md).
DEFAULT_OUTPUT = "labels/beta/{level}"


@dataclass(frozen=True)
class Sanity:
    """Checks every label must pass before it is stored (failures are recorded with the reason).

    Attributes:
        min_distance_angstrom: no two atoms closer than this (Å), checked before any work.
        max_coordinate_angstrom: no coordinate larger in magnitude (Å).
        max_neighbour_distance_angstrom: every atom has another atom within this distance (Å);
            a larger gap means a fragment or stray atom, not one molecule.
        energy_window_ha_per_electron: ``|E - Σ_atoms E_atom(Z)| <= window × N_electrons``,
            with ``E_atom`` the exact non-relativistic free-atom energies (Hartree); catches
            energies of a wrong state or a collapsed geometry (a squeezed water gave +112 Ha).
        max_dipole_au: largest plausible |μ| (e·bohr) of a neutral closed-shell molecule.
        max_cphf_residual: largest accepted error estimate of the first-order orbitals.
    """

    min_distance_angstrom: float = 0.5
    max_coordinate_angstrom: float = 100.0
    max_neighbour_distance_angstrom: float = 3.0
    energy_window_ha_per_electron: float = 0.2
    max_dipole_au: float = 10.0
    max_cphf_residual: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("min_distance_angstrom", "max_coordinate_angstrom",
                     "max_neighbour_distance_angstrom", "energy_window_ha_per_electron", "max_dipole_au", "max_cphf_residual"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sanity.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class LabelBetaParams:
    """The ``label_beta`` section of ``params.yaml``.

    Level of theory (see :class:`qmlrp.labels.beta.Level`): ``method``, ``xc``, ``basis``,
    ``grid_level``, ``conv_tol`` (Hartree), ``cphf_tol``, ``max_cycle``, ``density_fit``,
    ``auxbasis``, ``cart``, ``max_memory_mb``.

    Selection (:mod:`qmlrp.labels.selection`): ``input`` (molecule table), ``count`` molecules
    (``None``: all) of a uniform random permutation seeded by ``seed``; ``max_atoms`` an optional
    size cap (``None``: none).

    Output (:mod:`qmlrp.labels.records`): ``output`` folder, ``{level}`` replaced by the level's
    slug; ``shard_size`` rows per Parquet shard; ``retry_failed`` recomputes recorded failures;
    ``metrics`` JSON.

    Cluster (:mod:`qmlrp.cluster`): ``scheduler`` (local | address | slurm | pbs),
    ``workers`` (local worker processes), ``threads_per_worker``, ``address`` (``tcp://host:port``
    for ``address``), ``jobqueue`` (:class:`Jobqueue`), ``openblas_coretype``, ``max_pending``
    tasks queued at once, ``progress`` bar.
    """

    method: Literal["rks", "rhf"] = "rks"
    xc: str = "b3lyp5"
    basis: str = "6-31g"
    grid_level: int = 3
    conv_tol: float = 1e-10
    cphf_tol: float = 1e-9
    max_cycle: int = 100
    density_fit: bool = False
    auxbasis: str | None = None
    cart: bool = False
    max_memory_mb: int = 4000
    input: str = "data/qm9.parquet"
    count: int | None = 10
    seed: int = 0
    max_atoms: int | None = None
    output: str = DEFAULT_OUTPUT
    metrics: str = "metrics/label_beta.json"
    shard_size: int = 10
    retry_failed: bool = False
    scheduler: Literal["local", "address", "slurm", "pbs"] = "local"
    workers: int = 2
    threads_per_worker: int = 1
    address: str | None = None
    jobqueue: Jobqueue = field(default_factory=Jobqueue)
    openblas_coretype: str | None = "auto"
    sanity: Sanity = field(default_factory=Sanity)
    progress: bool = True
    max_pending: int = 2000

    def __post_init__(self) -> None:
        for name, minimum in (("count", 1), ("max_atoms", 1), ("seed", 0), ("shard_size", 1),
                              ("workers", 1), ("threads_per_worker", 1), ("max_pending", 1),
                              ("max_memory_mb", 1)):
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ValueError(f"{name} must be >= {minimum} (or null where allowed), got {value}")
        if self.scheduler == "address" and not self.address:
            raise ValueError("scheduler 'address' needs 'address: tcp://host:port'")
        if "{" in self.output.replace("{level}", ""):
            raise ValueError(f"output may only use the placeholder {{level}}: {self.output!r}")
        self.level  # noqa: B018 - validates method, xc, grid_level, tolerances once, up front

    @property
    def level(self) -> Level:
        """The level of theory (raises ValueError for impossible values)."""
        return Level(method=self.method, xc=self.xc, basis=self.basis, grid_level=self.grid_level,
                     conv_tol=self.conv_tol, cphf_tol=self.cphf_tol, max_cycle=self.max_cycle,
                     density_fit=self.density_fit, auxbasis=self.auxbasis, cart=self.cart,
                     max_memory_mb=self.max_memory_mb)

    def output_dir(self) -> Path:
        """Label folder of this level (``{level}`` replaced by :meth:`Level.slug`)."""
        return Path(self.output.replace("{level}", self.level.slug()))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "LabelBetaParams":
        """Parse a ``label_beta`` mapping; any bad key or value raises a one-line QmlrpError."""
        if values is not None and not isinstance(values, Mapping):
            raise QmlrpError(f"params.yaml {SECTION}: expected a mapping, got {values!r}")
        return parse_section(cls, SECTION, dict(values or {}))


def read_section(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The raw ``label_beta`` mapping of a params file (not yet checked).

    Raises:
        QmlrpError: the file is missing or unreadable, or the section is absent or not a mapping.
    """
    import yaml

    try:
        params = load_params(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())
        raise QmlrpError(f"{path}: cannot read the parameter file: {reason}") from None
    if SECTION not in params:
        raise QmlrpError(f"{path}: no section '{SECTION}'")
    section = params[SECTION]
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise QmlrpError(f"params.yaml {SECTION}: expected a mapping, got {section!r}")
    return dict(section)


def load_label_beta_params(path: str | Path = DEFAULT_PARAMS) -> LabelBetaParams:
    """Read and check the ``label_beta`` section of a params file."""
    return LabelBetaParams.from_mapping(read_section(path))
