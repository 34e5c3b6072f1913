"""Explaining the equivariant beta_par model (issue 18, item 4): exact per-atom parts, then LRP to the features.

With mu_hat fixed per molecule, beta_par = 3/5 beta_vec . mu_hat is linear in the beta head's per-atom
scalars: ``beta_par = sum_a q_a s_beta (r_a - rbar) . (3/5 mu_hat)`` (the relevance of the q layer, exact,
see :func:`qmlrp.relevance.layer_rules.charge_dipole`), and in the bond dipoles' weights when the head has them
(``+ sum_pairs s_beta (w_ij - w_ji) u_ij . (3/5 mu_hat)``). LRP carries each atom's part on to its input
features (the walk's per-molecule output functional ``c = (0, 0, 0, 3/5 mu_hat)``); the 12 feature-type
shares of |R| per molecule are the same summary as the explain stage's (``shares.parquet``), so the
seed's hypothesis (beta_par's profile closer to alpha's than to ZPVE's) is re-tested on this model with
:func:`qmlrp.relevance.compare.compare` against the published alpha and ZPVE profiles.

A fold that is a seed ensemble (``train_beta_vector.members``) is explained as its mean: mu_hat is the
ensemble's (the mean of the members' mu), and since beta_par = mean_s 3/5 beta_vec^s . mu_hat is then linear in
each member's output, the ensemble's relevance is exactly the mean of the members' relevance for that one
functional (atom parts the same), conserved like each member's.

Each fold's model explains its own test molecules (every labelled molecule once). Outputs:
``plots/explain/beta_vector/shares.parquet`` (id, rule, outlier, 12 types), ``atoms.csv`` (per atom: id,
element, its exact part of the predicted beta_par, a.u.: its charge's and, with bond dipoles, its outgoing bond
dipoles'), ``metrics/explain_beta_vector.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from qmlrp.features.layout import ELEMENTS
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv, write_json, write_parquet
from qmlrp.relevance.summary import FEATURE_TYPES, type_shares

RULE = "eps"


def beta_parallel_coefficients(y: np.ndarray) -> np.ndarray:
    """(n, 6) output coefficients of beta_par with mu_hat fixed: ``(0, 0, 0, 3/5 mu/|mu|)``."""
    mu = np.asarray(y, np.float64)[:, :3]
    mu_hat = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
    return np.concatenate([np.zeros_like(mu_hat), 0.6 * mu_hat], axis=1)


def atom_parts(model: Any, inputs: dict[str, np.ndarray], coef: np.ndarray) -> np.ndarray:
    """(n_atoms,) each atom's exact part of the output functional ``coef`` (n_molecules, 6) (beta_par, a.u.).

    The charges' part ``q_a s (r_a - rbar) . c``, plus, with bond dipoles, the atom's outgoing bond dipoles
    ``s w(h_a, p_ab) u_ab . c`` over its pairs (the weight of a bond dipole is computed from its first atom's
    embedding, so it is that atom's); the parts of a molecule sum to its output."""
    rec = {r.path: r for r in model.record(inputs).walk()}
    q = np.asarray(rec["head.charges"].outputs, np.float64)
    g = np.asarray(rec["head.dipole"].extras["g"], np.float64)
    scale = np.asarray(model.head.scaling.scale, np.float64)
    owner = np.asarray(inputs["atom_molecule"])
    c = np.asarray(coef, np.float64).reshape(len(coef), -1, 3)  # (n_molecules, V, 3)
    parts = np.sum(q * scale * np.einsum("ai,avi->av", g, c[owner]), axis=1)
    if "head.bond_dipole" in rec:
        pair_atoms = np.asarray(inputs["pair_atoms"])
        u = np.asarray(rec["head.bond_dipole"].extras["u"], np.float64)  # (n_pairs, 3), first atom -> second
        w_ij = np.asarray(rec["head.bond_weights"].outputs, np.float64)  # (n_pairs, V): the first atom's weights
        w_ji = np.asarray(rec["head.bond_weights#2"].outputs, np.float64)  # the second atom's (along -u)
        along = scale * np.einsum("pi,pvi->pv", u, c[owner[pair_atoms[:, 0]]])  # (n_pairs, V)
        n_atoms = owner.size
        parts = (parts + np.bincount(pair_atoms[:, 0], (w_ij * along).sum(axis=1), minlength=n_atoms)
                 - np.bincount(pair_atoms[:, 1], (w_ji * along).sum(axis=1), minlength=n_atoms))
    return parts


def ensemble_relevance(explainers: Any, inputs: dict[str, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, Any]:
    """``(coef (n, 6), explanation)``: beta_par of the members' mean vectors, explained as the mean of the
    members' LRP-eps relevance for the one functional ``coef`` built from the ensemble's mu_hat (exact: beta_par
    of the mean is then the mean of each member's ``coef . y``). ``explainers``: a ``ModelLRP`` per member.
    The explanation is member 0's bookkeeping with the relevance (inputs, absorbed) and output the members' means."""
    from dataclasses import replace

    from qmlrp.relevance.rules import get_rule

    y = np.mean([np.asarray(lrp.model(inputs, training=False), np.float64) for lrp in explainers], axis=0)
    coef = beta_parallel_coefficients(y)
    explained = [lrp.explain_inputs(inputs, {RULE: get_rule(RULE)}, ids=ids, output=coef, keep=())[RULE]
                 for lrp in explainers]
    mean = {name: np.mean([getattr(x, name) for x in explained], axis=0)
            for name in ("atoms", "pairs", "output", "absorbed", "absorbed_mean", "absorbed_bias")}
    return coef, replace(explained[0], **mean)


def explain_fold(models: Any, store: FeatureStore, positions: np.ndarray,
                 batch_size: int = 64) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shares (one row per molecule) and atom parts (one row per atom) of the test molecules, for one model
    or the mean of a seed ensemble (a sequence of models of the same fold)."""
    from qmlrp.models.inputs import molecule_inputs
    from qmlrp.relevance.model_lrp import ModelLRP

    members = list(models) if isinstance(models, (list, tuple)) else [models]
    explainers = [ModelLRP(m) for m in members]
    shares, atoms = [], []
    for s in range(0, len(positions), batch_size):
        chunk = np.asarray(positions[s:s + batch_size])
        inputs = molecule_inputs(store, chunk)
        coef, e = ensemble_relevance(explainers, inputs, store.ids[chunk])
        sh = type_shares(e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, len(chunk))
        frame = pd.DataFrame(sh, columns=list(FEATURE_TYPES))
        frame.insert(0, "outlier", False)
        frame.insert(0, "rule", RULE)
        frame.insert(0, "id", store.ids[chunk])
        shares.append(frame)
        parts = np.mean([atom_parts(m, inputs, coef) for m in members], axis=0)
        element = np.asarray(inputs["atom_features"])[:, : len(ELEMENTS)].argmax(axis=1)
        atoms.append(pd.DataFrame({"id": store.ids[chunk][inputs["atom_molecule"]],
                                   "element": np.asarray(ELEMENTS)[element], "part_au": parts}))
    return pd.concat(shares, ignore_index=True), pd.concat(atoms, ignore_index=True)


def element_summary(atoms: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per element: its share of the total |part| and the mean part per atom (a.u.)."""
    total = float(atoms["part_au"].abs().sum())
    out = {}
    for element, group in atoms.groupby("element"):
        out[str(element)] = {"share_of_abs_parts": float(group["part_au"].abs().sum() / total),
                             "mean_part_au": float(group["part_au"].mean()), "n_atoms": int(len(group))}
    return out


def explain_beta_vector(models_dir: str | Path = "models", explain_root: str | Path = "plots/explain",
                        metrics_path: str | Path = "metrics/explain_beta_vector.json", n_folds: int = 10,
                        bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Explain every fold's model on its test molecules; compare the profile with alpha's and ZPVE's."""
    from qmlrp.data.split import make_split
    from qmlrp.models.io import load_model
    from qmlrp.models.members import ensemble_files
    from qmlrp.paths import dataset_paths
    from qmlrp.relevance.compare import Comparison, bootstrap_profiles, compare, read_shares

    _, features, folds = dataset_paths("beta")
    store = FeatureStore.open(features)
    shares, atoms, members = [], [], []
    for fold in range(n_folds):
        files = ensemble_files(models_dir, "beta_vector", fold)
        if not files[0].exists():
            continue
        models = [load_model(path) for path in files]
        members.append(len(models))
        test = make_split(store, folds, fold, 0.1, 0).test
        s, a = explain_fold(models, store, test)
        shares.append(s)
        atoms.append(a)
    shares_df, atoms_df = pd.concat(shares, ignore_index=True), pd.concat(atoms, ignore_index=True)
    out_dir = Path(explain_root) / "beta_vector"
    write_parquet(pa.Table.from_pandas(shares_df, preserve_index=False), out_dir / "shares.parquet")
    write_csv(atoms_df, out_dir / "atoms.csv")
    root = Path(explain_root)
    profiles = {"beta_vector": shares_df[list(FEATURE_TYPES)].to_numpy(np.float64)}
    for key in ("alpha", "zpve", "beta"):
        profiles[key] = read_shares(key, RULE, root)
    rng = np.random.default_rng(seed)
    boot = {k: bootstrap_profiles(v, bootstrap, rng) for k, v in profiles.items()}
    means = {k: v.mean(axis=0) for k, v in profiles.items()}
    result = {
        "rule": RULE, "n_molecules": int(len(shares_df)), "folds": len(shares), "members_per_fold": members,
        "profiles": {k: dict(zip(FEATURE_TYPES, map(float, v))) for k, v in means.items()},
        "hypothesis_beta_vector": compare(means, boot, Comparison("beta_vector", "alpha", "zpve")),
        "hypothesis_invariant_beta": compare(means, boot, Comparison("beta", "alpha", "zpve")),
        "atom_parts_by_element": element_summary(atoms_df),
    }
    write_json(result, metrics_path)
    return result
