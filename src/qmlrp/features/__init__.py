"""Molecular Graph features: RDKit molecules from QM9 geometries, atom and pair features, storage."""
