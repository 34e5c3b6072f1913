"""Vibrational-spectrum maths for the harmonic-frequency targets (numpy only, no Keras).

QM9 lists each molecule's harmonic frequencies (cm^-1) without intensities, so a spectrum here is
a set of unit sticks, one per normal mode. The frequency target of the model is the padded vector
of :func:`frequency_vector`: the modes sorted in descending order (index 0 = omega_1, the highest),
NaN-padded to the head width (81 = 3 x 29 - 6, QM9's largest molecule).

Mode counts: 3N - 6, or 3N - 5 for a linear molecule (:func:`is_linear`: every atom within
``LINEAR_TOLERANCE`` of one line). QM9 has five linear molecules (acetylene, HCN, butadiyne,
cyanoacetylene, dicyanoacetylene; ids 4, 5, 23, 24, 486), and they list 3N - 5 modes.

Spectrum-level scores, both over a molecule's real modes only:

* :func:`sis` -- spectral information similarity (chemprop-IR, McGill et al. 2021): both stick
  spectra broadened by Gaussians of ``FWHM`` = 15 cm^-1 on the grid 0..4000 cm^-1 (step 2),
  normalised to sum 1, values below 1e-8 raised to 1e-8 and normalised again; SIS = 1 / (1 + SID) with the spectral
  information divergence SID = sum p ln(p/q) + q ln(q/p). 1 for identical spectra, -> 0 apart.
* :func:`wasserstein1` -- the earth mover's distance (cm^-1) between the two stick spectra, each
  normalised to total weight 1 (unit sticks of weight 1/n): the mean frequency shift needed to turn
  one into the other; two single sticks Delta apart are Delta apart. No grid, no broadening.
"""

from __future__ import annotations

import numpy as np

from qmlrp.errors import QmlrpError

LINEAR_TOLERANCE = 0.01
"""Angstrom: largest distance of an atom from the molecule's axis for it to count as linear."""
GRID = np.arange(0.0, 4000.0 + 1e-9, 2.0)
"""cm^-1: the wavenumber grid of the broadened spectra (0..4000, step 2: 2001 points)."""
FWHM = 15.0
"""cm^-1: full width at half maximum of the Gaussian broadening of each stick."""
SIS_FLOOR = 1e-8
"""Broadened, normalised spectra are floored at this value before the divergence (as chemprop-IR)."""


def is_linear(coordinates: np.ndarray, tolerance: float = LINEAR_TOLERANCE) -> bool:
    """True when all atoms of ``coordinates`` (n, 3) Angstrom lie within ``tolerance`` of one line
    (every molecule of one or two atoms is linear)."""
    xyz = np.asarray(coordinates, np.float64).reshape(-1, 3)
    if xyz.shape[0] <= 2:
        return True
    centred = xyz - xyz.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    off_axis = centred - np.outer(centred @ axis, axis)
    return bool(np.max(np.linalg.norm(off_axis, axis=1)) <= tolerance)


def n_modes(n_atoms: int, linear: bool) -> int:
    """Number of vibrational modes: 3N - 5 (linear) or 3N - 6."""
    if n_atoms < 2:
        raise QmlrpError(f"a molecule of {n_atoms} atom(s) has no vibrational modes")
    return 3 * int(n_atoms) - (5 if linear else 6)


def frequency_vector(frequencies: np.ndarray, width: int) -> np.ndarray:
    """(width,) float64: ``frequencies`` (cm^-1) sorted in descending order, NaN-padded.

    Raises QmlrpError when there are more than ``width`` modes."""
    values = np.sort(np.asarray(frequencies, np.float64).reshape(-1))[::-1]
    if values.size > width:
        raise QmlrpError(f"{values.size} modes do not fit a head of {width} outputs")
    out = np.full(width, np.nan)
    out[: values.size] = values
    return out


def broadened(frequencies: np.ndarray, grid: np.ndarray = GRID, fwhm: float = FWHM) -> np.ndarray:
    """(len(grid),) sum of unit-area Gaussians of FWHM ``fwhm`` (cm^-1) centred on ``frequencies``."""
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    f = np.asarray(frequencies, np.float64).reshape(-1)
    f = f[np.isfinite(f)]
    z = (grid[:, None] - f[None, :]) / sigma
    return np.exp(-0.5 * z * z).sum(axis=1) / (sigma * np.sqrt(2.0 * np.pi))


def _normalised(spectrum: np.ndarray) -> np.ndarray:
    total = float(spectrum.sum())
    s = np.maximum(spectrum / total if total > 0 else spectrum, SIS_FLOOR)
    return s / s.sum()


def sis(predicted: np.ndarray, reference: np.ndarray, grid: np.ndarray = GRID, fwhm: float = FWHM) -> float:
    """Spectral information similarity in [0, 1] of two stick spectra (frequencies in cm^-1;
    NaN entries are ignored), broadened on ``grid`` (see the module docstring)."""
    p = _normalised(broadened(predicted, grid, fwhm))
    q = _normalised(broadened(reference, grid, fwhm))
    sid = float(np.sum(p * np.log(p / q) + q * np.log(q / p)))
    return 1.0 / (1.0 + sid)


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance (cm^-1) between two stick spectra of unit total weight (each stick
    1/n of its spectrum; NaN entries ignored): the integral of |F_a - F_b| over wavenumber
    (:func:`scipy.stats.wasserstein_distance`)."""
    from scipy.stats import wasserstein_distance

    x = np.asarray(a, np.float64).reshape(-1)
    y = np.asarray(b, np.float64).reshape(-1)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        raise QmlrpError("wasserstein1: a spectrum without sticks")
    return float(wasserstein_distance(x, y))


def masked_mae(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """Mean absolute error over the real (finite) labels of ``y_true`` (n,) or (n, T) (NaN =
    padding or no label); NaN when there is none. With all labels finite: the plain MAE."""
    y_pred, y_true = np.asarray(y_pred, np.float64), np.asarray(y_true, np.float64)
    real = np.isfinite(y_true)
    return float(np.mean(np.abs(y_pred - y_true)[real])) if real.any() else float("nan")


def label_mad(y_true: np.ndarray) -> float:
    """Mean absolute deviation of labels ``y_true`` (n,) or (n, T) from their mean -- per output
    for a vector (the MAE of predicting each mode's mean), over real (finite) entries only."""
    y = np.asarray(y_true, np.float64)
    y = y.reshape(len(y), -1)
    real = np.isfinite(y)
    if not real.any():
        return float("nan")
    counts = real.sum(axis=0)
    mean = np.where(real, y, 0.0).sum(axis=0) / np.maximum(counts, 1)
    return float(np.mean(np.abs(y - mean)[real]))


def spectrum_scores(y_pred: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per molecule ``(sis (n,), wasserstein1 (n,) cm^-1)`` for padded (n, T) frequency vectors;
    only the reference's real (finite) modes count, in both spectra."""
    y_pred, y_true = np.atleast_2d(y_pred), np.atleast_2d(y_true)
    s, w = np.empty(len(y_true)), np.empty(len(y_true))
    for i, (p, t) in enumerate(zip(y_pred, y_true)):
        real = np.isfinite(t)
        s[i] = sis(p[real], t[real])
        w[i] = wasserstein1(p[real], t[real])
    return s, w
