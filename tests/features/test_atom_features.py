"""Hand-checked atom features of named QM9 molecules (indices into qm9pack / dsgdb9nsd)."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from qmlrp.features.atom_features import atom_feature_matrix
from qmlrp.features.layout import ATOM_FEATURES, N_ATOM_FEATURES
from tests.conftest import positions_of

COL = {name: k for k, name in enumerate(ATOM_FEATURES)}


def test_methane_1(qm9_graph):
    rec, graph, _ = qm9_graph(1)
    f = graph.atom_features
    assert f.shape == (5, N_ATOM_FEATURES)
    c = positions_of(rec.atomic_numbers, 6)[0]
    hs = positions_of(rec.atomic_numbers, 1)
    assert f[c, COL["element_C"]] == 1 and f[c].sum() - f[c, COL["gasteiger_charge"]] == 2  # C one-hot + sp3
    assert f[c, COL["hybridization_sp3"]] == 1
    assert np.all(f[hs, COL["element_H"]] == 1)
    assert np.all(f[hs][:, [COL["hybridization_sp"], COL["hybridization_sp2"], COL["hybridization_sp3"]]] == 0)
    q = f[:, COL["gasteiger_charge"]]
    assert q[c] < 0 and np.all(q[hs] > 0)
    assert q.sum() == pytest.approx(0.0, abs=1e-5)           # neutral molecule
    assert np.allclose(q[hs], q[hs][0], atol=1e-6)           # four equivalent H
    assert np.all(f[:, [COL["hbond_donor"], COL["hbond_acceptor"], COL["aromatic"], COL["formal_charge"]]] == 0)


def test_water_3(qm9_graph):
    rec, graph, _ = qm9_graph(3)
    f = graph.atom_features
    o = positions_of(rec.atomic_numbers, 8)[0]
    assert f[o, COL["element_O"]] == 1
    assert f[o, COL["hbond_donor"]] == 1 and f[o, COL["hbond_acceptor"]] == 1
    assert f[o, COL["hybridization_sp3"]] == 1
    assert f[o, COL["gasteiger_charge"]] < -0.3
    for h in positions_of(rec.atomic_numbers, 1):
        assert f[h, COL["hbond_donor"]] == 0 and f[h, COL["hbond_acceptor"]] == 0


def test_benzene_214_aromatic_ring(qm9_graph):
    rec, graph, _ = qm9_graph(214)
    f = graph.atom_features
    cs = positions_of(rec.atomic_numbers, 6)
    hs = positions_of(rec.atomic_numbers, 1)
    assert len(cs) == 6
    assert np.all(f[cs, COL["aromatic"]] == 1) and np.all(f[hs, COL["aromatic"]] == 0)
    assert np.all(f[cs, COL["hybridization_sp2"]] == 1)
    assert np.all(f[cs, COL["ring_size_6"]] == 1) and np.all(f[hs, COL["ring_size_6"]] == 0)
    assert np.all(f[:, [COL[f"ring_size_{k}"] for k in (3, 4, 5, 7, 8)]] == 0)


def test_bicyclo_2_2_0_hexane_662_ring_counts(qm9_graph):
    rec, graph, mol = qm9_graph(662)
    f = graph.atom_features
    cs = positions_of(rec.atomic_numbers, 6)
    heavy_degree = {c: sum(n.GetAtomicNum() > 1 for n in mol.GetAtomWithIdx(c).GetNeighbors()) for c in cs}
    bridgeheads = [c for c in cs if heavy_degree[c] == 3]
    others = [c for c in cs if heavy_degree[c] == 2]
    assert len(bridgeheads) == 2 and len(others) == 4
    assert np.all(f[bridgeheads, COL["ring_size_4"]] == 2)   # fused: both four-membered rings
    assert np.all(f[others, COL["ring_size_4"]] == 1)
    assert np.all(f[:, COL["ring_size_6"]] == 0)             # SSSR: the 6-ring envelope is not counted
    assert np.all(f[cs, COL["aromatic"]] == 0)


def _cip_from_geometry(coords: np.ndarray, centre: int, by_priority: list[int]) -> str:
    """R/S from the geometry: with the lowest-priority substituent away from the viewer, 1->2->3 clockwise is R.

    For substituent vectors a, b, c (priorities 1-3, relative to the centre) the triple product
    a . (b x c) is negative when they run clockwise seen from the side opposite the 4th substituent.
    """
    a, b, c = (coords[k] - coords[centre] for k in by_priority[:3])
    return "R" if np.dot(a, np.cross(b, c)) < 0 else "S"


@pytest.mark.parametrize("mirror", [False, True])
def test_lactonitrile_67_stereocentre(qm9_record, mirror):
    """CC(O)C#N: priorities O > C(#N) > CH3 > H, set by hand (CIP: (N,N,N) beats (H,H,H))."""
    from qmlrp.features.graph import graph_from_mol
    from qmlrp.features.molecule import build_molecule

    rec = qm9_record(67)
    coords = rec.coordinates * (np.array([1.0, 1.0, -1.0]) if mirror else 1.0)
    mol, _ = build_molecule(rec.atomic_numbers, coords, rec.smiles, rec.name)
    f = graph_from_mol(mol, coords).atom_features
    o = positions_of(rec.atomic_numbers, 8)[0]
    centre = [n.GetIdx() for n in mol.GetAtomWithIdx(o).GetNeighbors() if n.GetAtomicNum() == 6][0]
    nbrs = mol.GetAtomWithIdx(centre).GetNeighbors()
    nitrile_c = [n.GetIdx() for n in nbrs if any(m.GetAtomicNum() == 7 for m in n.GetNeighbors())][0]
    methyl_c = [n.GetIdx() for n in nbrs if n.GetAtomicNum() == 6 and n.GetIdx() != nitrile_c][0]
    hydrogen = [n.GetIdx() for n in nbrs if n.GetAtomicNum() == 1][0]
    expected = _cip_from_geometry(coords, centre, [o, nitrile_c, methyl_c, hydrogen])
    assert expected == ("S" if mirror else "R")  # QM9's stored enantiomer of 67 is (R)
    assert f[centre, COL["chirality_R"]] == (expected == "R")
    assert f[centre, COL["chirality_S"]] == (expected == "S")
    others = [k for k in range(len(f)) if k != centre]
    assert np.all(f[others][:, [COL["chirality_R"], COL["chirality_S"]]] == 0)
    # the nitrile N: sp, acceptor, not donor; the hydroxyl O: donor and acceptor
    n = positions_of(rec.atomic_numbers, 7)[0]
    assert f[n, COL["hybridization_sp"]] == 1 and f[n, COL["hbond_acceptor"]] == 1 and f[n, COL["hbond_donor"]] == 0
    assert f[o, COL["hbond_donor"]] == 1 and f[o, COL["hbond_acceptor"]] == 1


def test_zwitterion_271_formal_charges(qm9_graph):
    """[NH3+]CCC([O-])=O (beta-alanine zwitterion)."""
    rec, graph, mol = qm9_graph(271)
    f = graph.atom_features
    n = positions_of(rec.atomic_numbers, 7)[0]
    os_ = positions_of(rec.atomic_numbers, 8)
    assert f[n, COL["formal_charge"]] == 1
    assert sorted(f[os_, COL["formal_charge"]].tolist()) == [-1, 0]
    assert f[:, COL["formal_charge"]].sum() == 0
    assert f[n, COL["hbond_donor"]] == 1 and f[n, COL["hbond_acceptor"]] == 0  # N+ has no lone pair
    assert np.all(f[os_, COL["hbond_acceptor"]] == 1) and np.all(f[os_, COL["hbond_donor"]] == 0)
    assert np.isfinite(f[:, COL["gasteiger_charge"]]).all()


@pytest.mark.parametrize(
    "smiles, donors, acceptors",
    [
        ("NC=O", {"N"}, {"O"}),            # formamide: amide N is not an acceptor
        ("CC#N", set(), {"N"}),            # nitrile N accepts
        ("c1cc[nH]c1", {"N"}, set()),      # pyrrole nH donates, no lone pair to accept
        ("c1ccncc1", set(), {"N"}),        # pyridine N accepts
        ("CF", set(), {"F"}),
        ("COC", set(), {"O"}),
        ("CN", {"N"}, {"N"}),
    ],
)
def test_hbond_rule(smiles, donors, acceptors):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    from rdkit.Chem import AllChem

    AllChem.Compute2DCoords(mol)
    f = atom_feature_matrix(mol)
    symbol = [a.GetSymbol() for a in mol.GetAtoms()]
    assert {symbol[k] for k in np.nonzero(f[:, COL["hbond_donor"]])[0]} == donors
    assert {symbol[k] for k in np.nonzero(f[:, COL["hbond_acceptor"]])[0]} == acceptors


def test_anionic_aromatic_ring_n_127825_is_an_acceptor(qm9_graph):
    """C[NH+]=C(N)C1=NC=N[N-]1: the triazolide n- (two connections, lone pair free) accepts; the
    charged N-H+ donates but never accepts."""
    rec, graph, mol = qm9_graph(127825)
    f = graph.atom_features
    anion = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 7 and a.GetFormalCharge() == -1]
    cation = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 7 and a.GetFormalCharge() == 1]
    assert len(anion) == 1 and len(cation) == 1
    assert mol.GetAtomWithIdx(anion[0]).GetIsAromatic() and mol.GetAtomWithIdx(anion[0]).GetDegree() == 2
    assert f[anion[0], COL["hbond_acceptor"]] == 1 and f[anion[0], COL["hbond_donor"]] == 0
    assert f[cation[0], COL["hbond_acceptor"]] == 0 and f[cation[0], COL["hbond_donor"]] == 1
    ring_n = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 7 and a.GetIsAromatic()]
    assert f[ring_n, COL["hbond_acceptor"]].tolist() == [1.0, 1.0, 1.0]  # all three ring n accept


def test_pseudo_asymmetric_centres_311_get_no_chirality_bit(qm9_graph):
    """cis-1,3-dimethylcyclobutane: C1 and C3 are pseudo-asymmetric (CIP 's'); only R/S set a bit."""
    rec, graph, mol = qm9_graph(311)
    codes = {a.GetIdx(): a.GetProp("_CIPCode") for a in mol.GetAtoms() if a.HasProp("_CIPCode")}
    assert codes == {1: "s", 3: "s"}
    assert np.all(graph.atom_features[:, [COL["chirality_R"], COL["chirality_S"]]] == 0)
