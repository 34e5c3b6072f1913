"""Third functional derivative of the exchange-correlation energy (LDA and GGA).

For a closed-shell Kohn-Sham reference the static first hyperpolarizability contains, besides
the Fock-like terms of the 2n+1 rule, the term

    K_xyz = ∫ Σ_abc k_abc(r) ρ^x_a(r) ρ^y_b(r) ρ^z_c(r) dr,

where ``ρ^x = (ρ^x, ∂_xρ^x, ∂_yρ^x, ∂_zρ^x)`` is the first-order (field-derivative) total
density with its gradient and ``k_abc = ∂³(ρ ε_xc)/∂ρ_a∂ρ_b∂ρ_c`` is the XC kernel's third
derivative with respect to the same density variables (PySCF's ``eval_xc_eff(deriv=3)``, which
already folds the chain rule through σ = |∇ρ|²). ``pyscf.prop.polarizability.rhf`` omits this
term; :func:`xc_third_derivative` supplies it. With ``E(F) = E0 - μ·F - ½αFF - ⅙βFFF`` the
hyperpolarizability gains ``-K``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["xc_third_derivative", "xc_family"]


def xc_family(mf: object) -> str:
    """Return ``'HF'``, ``'LDA'``, ``'GGA'``, ``'MGGA'`` or ``'NLC'`` for a PySCF SCF object."""
    xc = getattr(mf, "xc", None)
    if xc is None:
        return "HF"
    if getattr(mf, "nlc", "") and hasattr(mf, "do_nlc") and mf.do_nlc():
        return "NLC"
    return str(mf._numint._xc_type(xc))


def xc_third_derivative(mf: object, dm1: NDArray[np.float64],
                        max_memory: int = 2000) -> NDArray[np.float64]:
    """Contract the XC third derivative with three first-order densities.

    Args:
        mf: converged closed-shell PySCF ``RKS`` object (its grids, ``_numint`` and ``xc``).
        dm1: first-order total (α+β) density matrices in the AO basis, shape ``(n, nao, nao)``,
            symmetric (static perturbations).
        max_memory: MB passed to PySCF's grid block loop.

    Returns:
        ``K[x, y, z] = ∫ k ρ^x ρ^y ρ^z`` in a.u., shape ``(n, n, n)``, symmetric in its indices.
        Zero for Hartree-Fock.

    Raises:
        NotImplementedError: for meta-GGA and non-local (VV10) functionals.
    """
    dm1 = np.asarray(dm1, dtype=float)
    n = dm1.shape[0]
    family = xc_family(mf)
    out = np.zeros((n, n, n))
    if family == "HF":
        return out
    if family not in ("LDA", "GGA"):
        raise NotImplementedError(f"XC third derivative for {family} functional {mf.xc!r}")

    mol = mf.mol
    ni = mf._numint
    grids = mf.grids
    if grids.coords is None:
        grids.build(with_non0tab=True)
    nao = mol.nao_nr()
    dm0 = mf.make_rdm1()
    ao_deriv = 0 if family == "LDA" else 1
    for ao, mask, weight, _coords in ni.block_loop(mol, grids, nao, ao_deriv, max_memory):
        rho0 = ni.eval_rho(mol, ao, dm0, mask, family, hermi=1, with_lapl=False)
        kxc = ni.eval_xc_eff(mf.xc, rho0, deriv=3, xctype=family)[3]
        # shape (nvar, nvar, nvar, ngrid); nvar = 1 (LDA) or 4 (GGA)
        nvar = kxc.shape[0]
        rho1 = np.empty((n, nvar, weight.size))
        for i in range(n):
            r = ni.eval_rho(mol, ao, dm1[i], mask, family, hermi=1, with_lapl=False)
            rho1[i] = np.reshape(r, (nvar, weight.size))
        wk = kxc.reshape(nvar, nvar, nvar, -1) * weight
        # t[x, b, c, g] = Σ_a k_abc ρ^x_a, then contract with ρ^y_b and ρ^z_c
        t = np.einsum("abcg,xag->xbcg", wk, rho1, optimize=True)
        t = np.einsum("xbcg,ybg->xycg", t, rho1, optimize=True)
        out += np.einsum("xycg,zcg->xyz", t, rho1, optimize=True)
    return out
