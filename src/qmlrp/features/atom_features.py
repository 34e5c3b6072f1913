"""The 21 atom features of the Molecular Graph, computed from a sanitized RDKit molecule.

H-bond rules (defined here, tested in tests/features/test_atom_features.py):

* **donor**: an N or O atom carrying at least one hydrogen: the N-H and O-H groups that Lipinski's
  rule of five counts as donors (Lipinski et al., Adv. Drug Deliv. Rev. 23, 3 (1997)). Charged N-H+
  counts; C-H never does.
* **acceptor**: Lipinski's N and O (plus F), refined as in the Daylight/RDKit acceptor patterns to
  drop atoms whose lone pair is not available: any O that is neutral or anionic; neutral F;
  neutral non-aromatic N unless single-bonded to a C that is double-bonded to O, N or S (amide,
  amidine, thioamide N); aromatic n with two connections, neutral (pyridine-type, not pyrrole-type
  nH) or anionic (the azolide n⁻ of e.g. a deprotonated triazole, whose lone pair is free).
  Positively charged N and O are never acceptors.

The flags sit on the heavy atom; hydrogens carry neither.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdPartialCharges

from qmlrp.errors import InputError
from qmlrp.features.layout import ATOMIC_NUMBERS, N_ATOM_FEATURES, RING_SIZES

HBOND_DONOR = Chem.MolFromSmarts("[N,n,O,o;!H0]")
HBOND_ACCEPTOR = Chem.MolFromSmarts("[$([O,o;+0,-1]),$([F;+0]),$([N;+0;!$(N-[C,c]=[O,N,S])]),$([n;+0,-1;X2])]")
_ELEMENT_COLUMN = {z: k for k, z in enumerate(ATOMIC_NUMBERS)}
_HYBRIDIZATION_COLUMN = {
    Chem.HybridizationType.SP: 15,
    Chem.HybridizationType.SP2: 16,
    Chem.HybridizationType.SP3: 17,
}


def atom_feature_matrix(mol: Chem.Mol, name: str = "molecule") -> np.ndarray:
    """(n_atoms, 21) float32 atom features in RDKit atom order (= XYZ order for our molecules).

    Columns follow :data:`qmlrp.features.layout.ATOM_FEATURES`; charges in units of e.
    Raises InputError if Gasteiger charges cannot be computed or come out NaN.
    """
    n = mol.GetNumAtoms()
    features = np.zeros((n, N_ATOM_FEATURES), dtype=np.float32)
    try:
        rdPartialCharges.ComputeGasteigerCharges(mol, throwOnParamFailure=True)
    except (ValueError, RuntimeError) as err:  # e.g. an sp-hybridised H or O: no parameters
        detail = str(err).strip().removeprefix("ERROR: ").splitlines()[0]
        raise InputError(name, f"no Gasteiger charge for this structure ({detail})") from None
    for atom in mol.GetAtoms():
        k = atom.GetIdx()
        features[k, _ELEMENT_COLUMN[atom.GetAtomicNum()]] = 1.0
        cip = atom.GetPropsAsDict().get("_CIPCode") if atom.HasProp("_CIPCode") else None
        if cip == "R":
            features[k, 5] = 1.0
        elif cip == "S":
            features[k, 6] = 1.0
        features[k, 7] = atom.GetFormalCharge()
        features[k, 8] = atom.GetDoubleProp("_GasteigerCharge")
        column = _HYBRIDIZATION_COLUMN.get(atom.GetHybridization())
        if column is not None:
            features[k, column] = 1.0
        features[k, 20] = float(atom.GetIsAromatic())
    if not np.all(np.isfinite(features[:, 8])):
        raise InputError(name, "Gasteiger charge is NaN")
    for ring in mol.GetRingInfo().AtomRings():
        if RING_SIZES[0] <= len(ring) <= RING_SIZES[-1]:
            features[list(ring), 9 + len(ring) - RING_SIZES[0]] += 1.0
    for (k,) in mol.GetSubstructMatches(HBOND_DONOR):
        features[k, 18] = 1.0
    for (k,) in mol.GetSubstructMatches(HBOND_ACCEPTOR):
        features[k, 19] = 1.0
    return features
