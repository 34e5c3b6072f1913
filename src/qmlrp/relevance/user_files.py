"""User molecule files for ``qmlrp explain``: read and featurize them before Keras loads.

Kept free of Keras / TensorFlow imports: :func:`~qmlrp.features.user_inputs.featurize_files` forks
crash-isolated children, which must happen before TensorFlow starts its threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qmlrp.errors import InputError, QmlrpError


def featurize_for_explain(files: list[Path], target: str) -> tuple[Any, list[Any], list[str]]:
    """Check the target, then read and featurize ``files`` with ``predict``'s
    :func:`~qmlrp.features.user_inputs.featurize_files` (XYZ, SDF; crash-isolated forks, so call
    this before Keras loads). Returns (target spec, [(molecule, graph, RDKit mol)], error and
    warning lines)."""
    from qmlrp.features.molecule import build_molecule
    from qmlrp.features.user_inputs import featurize_files
    from qmlrp.targets import get_target

    try:
        spec = get_target(target)
    except (ValueError, KeyError) as err:
        raise QmlrpError(str(err).strip("'\"")) from None
    featurized, bad = featurize_files(files)
    failures = [f.line() for f in bad]
    warnings = [f"warning: {f.molecule.file} [{f.molecule.name}]: {w}" for f in featurized for w in f.warnings]
    kept = []
    for item in featurized:
        m_in = item.molecule
        try:
            mol, _ = build_molecule(m_in.atomic_numbers, m_in.coordinates, m_in.smiles, m_in.name)
        except (InputError, ValueError, RuntimeError) as err:
            failures.append(f"error: {m_in.file} [{m_in.name}]: cannot draw ({str(err).splitlines()[0]})")
            continue
        kept.append((m_in, item.graph, mol))
    return spec, kept, failures + warnings
