"""Targets as a data concept: what a model predicts, and how its labels, metric and report behave.

Each :class:`Target` has a :class:`~qmlrp.targets.kinds.TargetKind` -- ``scalar`` (alpha, ZPVE,
omega_1, beta_par), ``padded_vector`` (the 81 harmonic frequencies, NaN-padded) or
``equivariant_vector`` (mu and beta_vec in the molecule's frame) or ``equivariant_tensor`` (the polarizability
tensor in the molecule's frame) -- and a label source (how its labels are made, :func:`load_labels`); the kind
owns which predictions file a run writes, how the ensemble's values are combined and
how one molecule's prediction is reported. Nothing here imports Keras, JAX or the training code:
``training`` and ``relevance`` both import it from below.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmlrp.errors import QmlrpError
from qmlrp.targets.kinds import EQUIVARIANT_TENSOR, EQUIVARIANT_VECTOR, PADDED_VECTOR, SCALAR, TargetKind

__all__ = ["TARGETS", "Target", "get_target", "vector_targets"]


@dataclass(frozen=True)
class Target:
    """A regression target.

    Attributes:
        name: short name (``models/<name>/``, ``results/<name>/``).
        column: column of the dataset's table holding the label.
        units: of the label.
        n_outputs: width of the model's head (1: a scalar; 81: the padded frequencies; 6: mu and beta_vec).
        dataset: where the molecules come from (:func:`qmlrp.paths.dataset_paths`): ``qm9`` (the
            ingest sample) or ``beta`` (the molecules with a published beta label).
        kind: which predictions file, how an ensemble combines, which metric and which report
            (:mod:`qmlrp.targets.kinds`).
        source: how the labels are made (:data:`qmlrp.targets.labels.LABEL_SOURCES`): ``column`` (the
            table's ``column``), ``modes`` (the sorted, padded harmonic frequencies; one output: omega_1),
            ``crippen`` (computed from the molecules), ``label_vectors`` / ``label_tensor`` (mu and beta_vec,
            or the polarizability tensor, from the beta label folder).
    """

    name: str
    column: str
    units: str
    n_outputs: int = 1
    dataset: str = "qm9"
    kind: TargetKind = SCALAR
    source: str = "column"


TARGETS: dict[str, Target] = {
    "alpha": Target("alpha", "alpha_bohr3", "bohr^3"),
    "zpve": Target("zpve", "zpve_ev", "eV"),
    "frequencies": Target("frequencies", "frequencies_cm1", "cm^-1", n_outputs=81, kind=PADDED_VECTOR, source="modes"),
    "omega1": Target("omega1", "frequencies_cm1", "cm^-1", source="modes"),
    "beta": Target("beta", "beta_parallel_au", "a.u.", dataset="beta"),
    # mu (3) and beta_vec (3) in the QM9 frame from the labels' tensors; beta_par derived (issue 18).
    # Wildman-Crippen logP from RDKit's per-atom contributions: the relevance ground truth (qmlrp.targets.crippen).
    "crippen": Target("crippen", "crippen_logp", "logP units", source="crippen"),
    "beta_vector": Target("beta_vector", "dipole_au+beta_au", "a.u.", n_outputs=6, dataset="beta",
                          kind=EQUIVARIANT_VECTOR, source="label_vectors"),
    # the polarizability tensor (xx, yy, zz, xy, xz, yz) in the QM9 frame from the beta labels (issue 18 item 6)
    "alpha_tensor": Target("alpha_tensor", "alpha_au", "a.u.", n_outputs=6, dataset="beta", kind=EQUIVARIANT_TENSOR,
                           source="label_tensor"),
}


def get_target(name: str) -> Target:
    """The target called ``name``; an unknown name raises one-line QmlrpError listing the known ones."""
    if name not in TARGETS:
        raise QmlrpError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def vector_targets() -> tuple[str, ...]:
    """Targets of the equivariant model, vector or tensor head (their own training stages and prediction format)."""
    return tuple(name for name, t in TARGETS.items() if t.kind in (EQUIVARIANT_VECTOR, EQUIVARIANT_TENSOR))
