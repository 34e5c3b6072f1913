"""The 21 atom features of the Molecular Graph, computed from a sanitized RDKit molecule.

H-bond rules (defined here, tested in tests/features/test_atom_features.py):

* **donor**: an N or O atom carrying at least one hydrogen, i.e. the N-H and O-H groups that
  Lipinski's rule of five counts as donors (Lipinski et al., Adv. Drug Deliv. Rev. 23, 3 (1997)).
  Charged N-H+ counts; C-H never does.
* **acceptor**: RDKit's Lipinski acceptor pattern (``rdkit.Chem.Lipinski.HAcceptorSmarts``): hydroxyl
  O not bonded to a carbonyl-like atom, any other divalent or anionic O, N of valence 3 whose lone pair is
  not conjugated into an exocyclic C=O/C=N/C=S (so amide N is not an acceptor, nitrile and amine N are),
  aromatic n without H, and F.

The flag sits on the heavy atom; hydrogens carry neither.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdPartialCharges

from qmlrp.errors import InputError
from qmlrp.features.layout import ATOMIC_NUMBERS, N_ATOM_FEATURES, RING_SIZES

HBOND_DONOR = Chem.MolFromSmarts("[N,O;!H0]")
HBOND_ACCEPTOR = Chem.MolFromSmarts(
    "[$([O,S;H1;v2]-[!$(*=[O,N,P,S])]),$([O,S;H0;v2]),$([O,S;-]),$([N;v3;!$(N-*=!@[O,N,P,S])]),"
    "$([nH0,o,s;+0]),$([F])]"
)
_ELEMENT_COLUMN = {z: k for k, z in enumerate(ATOMIC_NUMBERS)}
_HYBRIDIZATION_COLUMN = {
    Chem.HybridizationType.SP: 15,
    Chem.HybridizationType.SP2: 16,
    Chem.HybridizationType.SP3: 17,
}


def atom_feature_matrix(mol: Chem.Mol, name: str = "molecule") -> np.ndarray:
    """(n_atoms, 21) float32 atom features in RDKit atom order (= XYZ order for our molecules).

    Columns follow :data:`qmlrp.features.layout.ATOM_FEATURES`; charges in units of e.
    Raises InputError if Gasteiger charges come out NaN.
    """
    n = mol.GetNumAtoms()
    features = np.zeros((n, N_ATOM_FEATURES), dtype=np.float32)
    rdPartialCharges.ComputeGasteigerCharges(mol, throwOnParamFailure=True)
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
