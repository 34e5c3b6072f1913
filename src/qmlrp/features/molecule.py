"""RDKit molecules from QM9 geometries, atom order = XYZ order.

Recipe: connectivity from the geometry (bonded when closer than ``tolerance`` x the sum of the
covalent radii of Cordero et al., Dalton Trans. 2008, 2832; tolerances tried in turn, because strained
QM9 cages have non-bonded 1,3 contacts of 1.78 A that the usual 1.3 would bond), bond orders and formal charges copied from the GDB SMILES through a graph isomorphism
(the SMILES is a template, as in ``AssignBondOrdersFromTemplate``, but hydrogens included);
where the geometry's graph does not match the SMILES, bond orders are perceived from the geometry
alone (:func:`rdDetermineBonds.DetermineBonds`, Hückel connectivity, neutral total charge).
The geometry is checked first (:mod:`qmlrp.features.geometry`); a SMILES that RDKit cannot parse,
a disconnected structure (several molecules in one block) and an ion are rejected with their reason.
The molecule is then sanitized and its stereochemistry assigned from the 3D coordinates
(CIP labels by the new CIP labeler, Hanson et al., J. Chem. Inf. Model. 58, 1755 (2018)).
"""

from __future__ import annotations

import os

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdCIPLabeler, rdDetermineBonds
from rdkit.Geometry import Point3D

from qmlrp.errors import InputError
from qmlrp.features.geometry import check_geometry
from qmlrp.features.layout import ATOMIC_NUMBERS, MAX_ATOMS

if not os.environ.get("QMLRP_VERBOSE"):  # set by `qmlrp --verbose`
    RDLogger.DisableLog("rdApp.*")

COVALENT_RADII: dict[int, float] = {1: 0.31, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57}
"""Angstrom (Cordero et al. 2008; sp3 carbon)."""
CONNECTIVITY_TOLERANCES: tuple[float, ...] = (1.1, 1.15, 1.2, 1.25, 1.05)

BOND_FROM_TEMPLATE = "template"
BOND_FROM_GEOMETRY = "geometry"


def _geometry_mol(atomic_numbers: np.ndarray, coordinates: np.ndarray) -> Chem.RWMol:
    mol = Chem.RWMol()
    conf = Chem.Conformer(len(atomic_numbers))
    for k, (z, xyz) in enumerate(zip(atomic_numbers, coordinates)):
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
        conf.SetAtomPosition(k, Point3D(*map(float, xyz)))
    mol.AddConformer(conf, assignId=True)
    return mol


def _connect(mol: Chem.RWMol, atomic_numbers: np.ndarray, coordinates: np.ndarray, tolerance: float) -> None:
    """Add single bonds between atoms closer than ``tolerance`` x (r_i + r_j)."""
    radii = np.array([COVALENT_RADII.get(int(z), 0.77) for z in atomic_numbers])
    dist = np.linalg.norm(coordinates[:, None, :] - coordinates[None, :, :], axis=-1)
    bonded = dist < tolerance * (radii[:, None] + radii[None, :])
    for i, j in zip(*np.nonzero(np.triu(bonded, k=1))):
        mol.AddBond(int(i), int(j), Chem.BondType.SINGLE)


def _plain_copy(mol: Chem.Mol) -> Chem.RWMol:
    """Copy with every bond single and no charges/aromaticity: matches on the bare graph."""
    plain = Chem.RWMol(mol)
    for bond in plain.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    for atom in plain.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
    plain.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(plain)
    return plain


def _orders_from_template(mol: Chem.RWMol, smiles: str) -> bool:
    """Copy bond orders and charges from ``smiles`` onto ``mol``'s connectivity; False if graphs differ."""
    template = Chem.MolFromSmiles(smiles)
    if template is None:
        return False
    template = Chem.AddHs(template)
    if template.GetNumAtoms() != mol.GetNumAtoms() or template.GetNumBonds() != mol.GetNumBonds():
        return False
    Chem.Kekulize(template, clearAromaticFlags=True)
    match = _plain_copy(mol).GetSubstructMatch(_plain_copy(template))
    if not match:
        return False
    for bond in template.GetBonds():
        target = mol.GetBondBetweenAtoms(match[bond.GetBeginAtomIdx()], match[bond.GetEndAtomIdx()])
        target.SetBondType(bond.GetBondType())
    for atom in template.GetAtoms():
        mol.GetAtomWithIdx(match[atom.GetIdx()]).SetFormalCharge(atom.GetFormalCharge())
    return True


def check_domain(atomic_numbers: np.ndarray, name: str) -> None:
    """Raise InputError unless the molecule is within the models' domain (H, C, N, O, F; <= 29 atoms)."""
    outside = sorted({int(z) for z in atomic_numbers} - set(ATOMIC_NUMBERS))
    if outside:
        symbols = ", ".join(Chem.GetPeriodicTable().GetElementSymbol(z) for z in outside)
        raise InputError(name, f"element(s) {symbols} outside H, C, N, O, F")
    if len(atomic_numbers) > MAX_ATOMS:
        raise InputError(name, f"{len(atomic_numbers)} atoms, more than the {MAX_ATOMS} of QM9")


def ion_charges(atomic_numbers: np.ndarray, coordinates: np.ndarray, charges: tuple[int, ...]) -> list[int]:
    """The net charges among ``charges`` for which RDKit perceives a closed-shell structure."""
    found = []
    for charge in charges:
        mol = _geometry_mol(atomic_numbers, coordinates)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=charge, useHueckel=False)
            Chem.SanitizeMol(mol)
        except (ValueError, RuntimeError, Chem.rdchem.MolSanitizeException):
            continue
        if not any(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()):
            found.append(charge)
    return found


def _charged_reason(charges: list[int]) -> str:
    kinds = " or ".join(f"{'a cation' if q > 0 else 'an anion'} (net charge {q:+d})" for q in charges)
    return f"charged: perceived as {kinds}; outside the neutral QM9 domain"


def _odd_electrons_reason(atomic_numbers: np.ndarray, coordinates: np.ndarray) -> str:
    charges = ion_charges(atomic_numbers, coordinates, (1, -1))
    if len(charges) == 1:
        return f"odd number of electrons: {_charged_reason(charges)}"
    if charges:
        return ("odd number of electrons: a radical, or an ion of net charge +1 or -1; "
                "outside the neutral closed-shell QM9 domain")
    return "odd number of electrons (radical): outside the closed-shell QM9 domain"


def _fragments_reason(atomic_numbers: np.ndarray, coordinates: np.ndarray, fragments: int) -> str:
    """Why the perceived structure has several fragments: several molecules, or an ion that fell apart."""
    connected = _geometry_mol(atomic_numbers, coordinates)
    _connect(connected, atomic_numbers, coordinates, max(CONNECTIVITY_TOLERANCES))
    if len(Chem.GetMolFrags(connected)) > 1:
        return f"disconnected: {fragments} fragments (one molecule per XYZ block)"
    charges = ion_charges(atomic_numbers, coordinates, (1, -1, 2, -2))
    if charges:
        return _charged_reason(charges)
    return f"RDKit perceives {fragments} fragments in a connected geometry"


def build_molecule(atomic_numbers: np.ndarray, coordinates: np.ndarray, smiles: str | None = None,
                   name: str = "molecule") -> tuple[Chem.Mol, str]:
    """Sanitized RDKit molecule, hydrogens explicit, atoms in the given order, 3D stereo assigned.

    Args:
        atomic_numbers: (n,) int.
        coordinates: (n, 3) float, Angstrom.
        smiles: bond-order template (QM9's GDB SMILES); None perceives bond orders from the geometry.

    Returns:
        The molecule and how its bond orders were found (``"template"`` or ``"geometry"``).

    Raises:
        InputError: outside the domain, an impossible geometry, an unparsable SMILES, a disconnected
            or charged structure, or RDKit cannot perceive a sane neutral closed-shell structure.
    """
    atomic_numbers = np.asarray(atomic_numbers)
    check_domain(atomic_numbers, name)
    coordinates = check_geometry(atomic_numbers, coordinates, name)
    if int(np.sum(atomic_numbers)) % 2:
        raise InputError(name, _odd_electrons_reason(atomic_numbers, coordinates))
    if smiles is not None and Chem.MolFromSmiles(smiles) is None:
        raise InputError(name, f"RDKit cannot parse the SMILES {smiles!r}")
    mol = _geometry_mol(atomic_numbers, coordinates)
    origin = BOND_FROM_GEOMETRY
    if smiles:
        for tolerance in CONNECTIVITY_TOLERANCES:
            _connect(mol, atomic_numbers, coordinates, tolerance)
            if _orders_from_template(mol, smiles):
                origin = BOND_FROM_TEMPLATE
                break
            mol = _geometry_mol(atomic_numbers, coordinates)
    if origin == BOND_FROM_GEOMETRY:
        mol = _geometry_mol(atomic_numbers, coordinates)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0, useHueckel=True)
        except (ValueError, RuntimeError) as err:
            charges = ion_charges(atomic_numbers, coordinates, (1, -1, 2, -2))
            if charges:
                raise InputError(name, _charged_reason(charges)) from None
            raise InputError(name, f"RDKit cannot perceive bond orders from the geometry ({str(err).splitlines()[0]})") from None
    try:
        Chem.SanitizeMol(mol)
    except Chem.rdchem.MolSanitizeException as err:
        raise InputError(name, f"RDKit cannot sanitize the perceived structure ({str(err).splitlines()[0]})") from None
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        raise InputError(name, _fragments_reason(atomic_numbers, coordinates, fragments))
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        raise InputError(name, f"charged: net charge {charge:+d}; outside the neutral QM9 domain")
    if any(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()):
        raise InputError(name, "radical centre perceived: outside the closed-shell QM9 domain")
    Chem.AssignStereochemistryFrom3D(mol)
    if any(atom.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED for atom in mol.GetAtoms()):
        rdCIPLabeler.AssignCIPLabels(mol)
    return mol, origin
