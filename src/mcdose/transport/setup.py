"""Pack a simulation's inputs into the arrays the transport kernels read.

:func:`prepare_simulation` validates the density and activity maps, assigns materials,
builds the physics tables, the voxel alias table of the source and the Woodcock majorant,
and fills the scalar ``params`` vector (see :mod:`mcdose.physics.layout`).  Both drivers
(CPU and CUDA) take the resulting :class:`SimulationInputs` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from mcdose.errors import InputError
from mcdose.physics import layout as L
from mcdose.physics.tables import PhysicsTables, build_physics_tables

#: Fixed-point tally resolution: 2²⁰ units per keV (≈ 1e-6 keV); a uint64 holds 1.7e13 keV.
TALLY_UNITS_PER_KEV = float(2**20)
#: Densities below this (g/cm³) are raised to it so that every voxel has a finite mass.
DENSITY_FLOOR_G_CM3 = 1e-6


@dataclass(frozen=True)
class TransportOptions:
    """Transport settings (defaults validated in tests/mcdose/transport).

    Attributes
    ----------
    electron_cutoff_keV : float
        Electrons below this energy deposit locally (10 keV: CSDA range 2.5 µm in water).
    photon_cutoff_keV : float
        Photons below this energy deposit locally (1 keV).
    brems_cut_keV : float
        Bremsstrahlung photons below this energy are absorbed along the track.
    step_fraction : float
        Maximum fractional energy loss per electron step.  0.05 reproduces the extrapolated
        ranges of Tabata et al. (1996) in water within 2 % (0.1 gives +3.5 %, converged
        steps +0.7 %; see docs/physics.md).
    step_lambda1 : float
        Maximum electron step in transport mean free paths λ₁.
    range_rejection : bool
        Deposit an electron at once when its CSDA range is shorter than the distance to
        the nearest face of its voxel (it cannot leave; only its radiative yield, < 0.3 %
        below 500 keV in water, is then absorbed instead of transported).
    boundary_steps : bool
        Inside a voxel, let an electron step grow to the distance to the nearest face
        (it cannot leave during such a step, so voxel tallies stay exact); the physics step
        limits apply near faces.  The boundary-crossing idea of EGSnrc's PRESTA-II
        (Kawrakow & Bielajew, NIM B 142 (1998) 253).
    """

    electron_cutoff_keV: float = 10.0
    photon_cutoff_keV: float = 1.0
    brems_cut_keV: float = 10.0
    step_fraction: float = 0.05
    step_lambda1: float = 0.3
    range_rejection: bool = True
    boundary_steps: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.step_fraction < 0.5:
            raise InputError(f"step_fraction must be in (0, 0.5), got {self.step_fraction}")
        if not 0.0 < self.step_lambda1 <= 5.0:
            raise InputError(f"step_lambda1 must be in (0, 5], got {self.step_lambda1}")
        if self.electron_cutoff_keV < 1.0 or self.photon_cutoff_keV < 1.0:
            raise InputError("transport cutoffs must be at least 1 keV (the table's lower end)")


@dataclass
class SimulationInputs:
    """Everything the kernels read, as contiguous NumPy arrays."""

    voxels: np.ndarray  # float32 (n_voxels, 2): density g/cm³ and material index, flat (z, y, x)
    src_index: np.ndarray  # int64 flat voxel indices with activity > 0
    src_prob: np.ndarray  # float64 alias probabilities
    src_alias: np.ndarray  # int64 alias targets (indices into src_index)
    beta_icdf: np.ndarray  # float64 keV
    elines: np.ndarray  # float64 (3, n)
    plines: np.ndarray  # float64 (3, n)
    majorant: np.ndarray  # float64 (n_e,) 1/cm, piecewise constant per grid cell
    tables: PhysicsTables
    params: np.ndarray  # float64 (N_PARAMS,)
    shape: tuple[int, int, int]
    total_activity_MBq: float
    emitted_energy_per_decay_keV: float
    material_names: tuple[str, ...]
    nuclide: str
    extra: dict = field(default_factory=dict)

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """Arrays in the argument order of :func:`mcdose.transport.history.run_history`.

        Floating-point tables are handed to the kernels in float32 (the kernels' precision,
        :mod:`mcdose.physics.fp`); integer arrays unchanged.  Built once and cached.
        """
        cached = self.extra.get("_kernel_arrays")
        if cached is None:
            t = self.tables
            arrays = (
                self.voxels, self.src_index, self.src_prob, self.src_alias,
                self.beta_icdf, self.elines, self.plines,
                t.mat_tab, t.inv_range, t.range_grid, t.kn_table, t.ray_table, t.ms_table,
                self.majorant, self.params,
            )  # fmt: skip
            cached = tuple(
                np.ascontiguousarray(a, dtype=np.float32) if a.dtype.kind == "f" else a
                for a in arrays
            )
            self.extra["_kernel_arrays"] = cached
        return cached


def _line_table(energy: np.ndarray, prob: np.ndarray, alias: np.ndarray) -> np.ndarray:
    n = len(energy)
    if n == 0:  # kernels index row 0 only when the yield is > 0; keep a valid array
        return np.zeros((3, 1))
    out = np.empty((3, n))
    out[L.L_ENERGY] = energy
    out[L.L_PROB] = prob
    out[L.L_ALIAS] = alias
    return out


@numba.njit(cache=True)
def _max_density_per_material(voxels, n_mat, nx, ny, skip_lo, skip_hi):
    """Maximum density per material, leaving out the voxels whose (x, y, z) indices lie in
    ``skip_lo`` … ``skip_hi`` (inclusive; an empty range, lo > hi, leaves out nothing)."""
    out = np.zeros(n_mat)
    for i in range(voxels.shape[0]):
        ix = i % nx
        iy = (i // nx) % ny
        iz = i // (nx * ny)
        if (skip_lo[0] <= ix <= skip_hi[0] and skip_lo[1] <= iy <= skip_hi[1]
                and skip_lo[2] <= iz <= skip_hi[2]):  # fmt: skip
            continue
        m = int(voxels[i, 1])
        if voxels[i, 0] > out[m]:
            out[m] = voxels[i, 0]
    return out


#: An empty index range for :func:`_max_density_per_material`: every voxel counts.
_SKIP_NONE = (np.array([0, 0, 0]), np.array([-1, -1, -1]))


#: Voxels at most this dense (g/cm³) may lie outside the body box: air and CT noise in air.
BODY_BOX_DENSITY_G_CM3 = 0.05

#: Below this ratio of majorants the body box is used (above it the extra stops cost more
#: than the longer flights outside save).
BODY_BOX_MAX_SCALE = 0.5


@numba.njit(cache=True)
def _dense_voxel_bounds(voxels, nx, ny, nz, threshold):
    """Index bounds (x, y, z) lower and upper, inclusive, of the voxels denser than
    ``threshold`` (lower > upper when there are none)."""
    lo = np.array([nx, ny, nz])
    hi = np.array([-1, -1, -1])
    for v in range(voxels.shape[0]):
        if voxels[v, 0] > threshold:
            ix = v % nx
            iy = (v // nx) % ny
            iz = v // (nx * ny)
            lo[0] = min(lo[0], ix)
            lo[1] = min(lo[1], iy)
            lo[2] = min(lo[2], iz)
            hi[0] = max(hi[0], ix)
            hi[1] = max(hi[1], iy)
            hi[2] = max(hi[2], iz)
    return lo, hi


def set_body_box(params, voxels, shape, tables, majorant) -> None:
    """Put the body box and the majorant outside it into ``params`` (see ``photon_flight``).

    The box holds every voxel denser than :data:`BODY_BOX_DENSITY_G_CM3`; outside it the
    majorant is ``P_OUTSIDE_SCALE`` times the box's, the smallest factor that bounds μ of
    every voxel there at every energy.  Where that factor would be above
    :data:`BODY_BOX_MAX_SCALE` (no air around the patient), no box is used.
    """
    nz, ny, nx = shape
    lo, hi = _dense_voxel_bounds(voxels, nx, ny, nz, BODY_BOX_DENSITY_G_CM3)
    scale = 1.0
    if np.all(hi >= lo):
        rho_out = _max_density_per_material(voxels, tables.mat_tab.shape[0], nx, ny, lo, hi)
        outside = woodcock_majorant(tables, rho_out)
        scale = float(np.max(outside / majorant))
    if not 0.0 < scale <= BODY_BOX_MAX_SCALE:
        params[L.P_OUTSIDE_SCALE] = params[L.P_INV_OUTSIDE_SCALE] = 1.0
        return
    size = (params[L.P_DX], params[L.P_DY], params[L.P_DZ])
    for axis, (k0, k1) in enumerate(((L.P_BOX_X0, L.P_BOX_X1), (L.P_BOX_Y0, L.P_BOX_Y1),
                                     (L.P_BOX_Z0, L.P_BOX_Z1))):  # fmt: skip
        params[k0] = lo[axis] * size[axis]
        params[k1] = (hi[axis] + 1) * size[axis]
    params[L.P_OUTSIDE_SCALE] = scale
    params[L.P_INV_OUTSIDE_SCALE] = 1.0 / scale


def pack_voxels(density: np.ndarray, materials: np.ndarray) -> np.ndarray:
    """Interleave density (floored at :data:`DENSITY_FLOOR_G_CM3`) and material index.

    One ``(n_voxels, 2)`` float32 array puts both numbers a kernel needs for a voxel in the
    same cache line: one memory access per photon flight or electron voxel crossing
    instead of two.
    """
    voxels = np.empty((density.size, 2), np.float32)
    voxels[:, L.V_DENSITY] = np.maximum(density.reshape(-1), np.float32(DENSITY_FLOOR_G_CM3))
    voxels[:, L.V_MATERIAL] = materials.reshape(-1)
    return voxels


def woodcock_majorant(tables: PhysicsTables, rho_max: np.ndarray) -> np.ndarray:
    """Majorant μ̂ (1/cm) per energy cell: max over materials of ρ_max·μ/ρ on the cell's ends.

    Linear interpolation between grid points keeps μ between the values at the cell's two
    ends, so the cell maximum bounds μ everywhere in the cell (Woodcock tracking needs
    μ ≤ μ̂ exactly; a 0.1 % margin covers rounding).
    """
    mu = tables.mat_tab[:, L.MU_TOTAL, :] * rho_max[:, None]
    cell = np.maximum(mu[:, :-1], mu[:, 1:]).max(axis=0)
    majorant = np.empty(mu.shape[1])
    majorant[:-1] = cell
    majorant[-1] = cell[-1]
    return majorant * 1.001


def _validate_maps(density: np.ndarray, activity: np.ndarray) -> None:
    if density.ndim != 3:
        raise InputError(f"density must be a 3-D (z, y, x) array, got shape {density.shape}")
    if activity.shape != density.shape:
        raise InputError(
            f"activity shape {activity.shape} does not match density shape {density.shape}"
        )
    if not np.isfinite(density).all():
        raise InputError("density contains non-finite values")
    if (density < 0).any():
        raise InputError("density contains negative values")
    if not np.isfinite(activity).all():
        raise InputError("activity contains non-finite values")
    if (activity < 0).any():
        raise InputError("activity contains negative values")


def prepare_simulation(
    density: np.ndarray,
    activity_MBq: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    nuclide: str = "Lu-177",
    materials: np.ndarray | None = None,
    material_names: tuple[str, ...] | None = None,
    options: TransportOptions | None = None,
    emissions: str = "all",
) -> SimulationInputs:
    """Validate inputs and build the kernel arrays.

    Parameters
    ----------
    density : ndarray (z, y, x)
        Mass density, g/cm³.
    activity_MBq : ndarray (z, y, x)
        Activity per voxel, MBq (only the relative distribution and the total matter).
    spacing_mm : (x, y, z)
        Voxel size, mm.
    nuclide : str
        ICRP-107 nuclide name.
    materials, material_names
        Optional material map (uint8 indices into ``material_names``); by default assigned
        from the density with :data:`mcdose.materials.DEFAULT_ASSIGNMENT`.
    options : TransportOptions
        Cutoffs and step control.
    emissions : {"all", "electrons", "photons"}
        Which of the decay's radiations to emit: "electrons" keeps β, conversion and Auger
        electrons and the energy deposited at the decay site; "photons" keeps γ, X-ray and
        annihilation photons (two 511 keV photons per positron, emitted back to back from
        the decay site — the positron range is neglected for them).  The two parts add up
        to "all" (used for the electron and photon parts of voxel dose kernels).

    Returns
    -------
    SimulationInputs
    """
    from mcdose.materials import DEFAULT_ASSIGNMENT, assign_materials
    from mcdose.nuclides import build_alias_table, emission_sampler, load_nuclide

    options = options or TransportOptions()
    if emissions not in ("all", "electrons", "photons"):
        raise InputError(f"emissions must be all, electrons or photons, got {emissions!r}")
    density = np.asarray(density)
    activity = np.asarray(activity_MBq)
    _validate_maps(density, activity)
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing must be three positive numbers (mm), got {spacing_mm}")
    total = float(activity.sum(dtype=np.float64))
    if not total > 0:
        raise InputError("activity is zero everywhere: nothing to simulate")

    if materials is None:
        material_names = tuple(DEFAULT_ASSIGNMENT.names)
        materials = assign_materials(density, DEFAULT_ASSIGNMENT)
    else:
        if material_names is None:
            raise InputError("material_names must accompany a material map")
        materials = np.asarray(materials)
        if materials.shape != density.shape:
            raise InputError("material map shape does not match density")
        if materials.size and int(materials.max()) >= len(material_names):
            raise InputError("material map refers to a material index without a name")
    voxels = pack_voxels(np.asarray(density, dtype=np.float32), np.asarray(materials, np.uint8))

    nuc = load_nuclide(nuclide)
    sampler = emission_sampler(
        nuc,
        electron_cutoff_keV=options.electron_cutoff_keV,
        photon_cutoff_keV=options.photon_cutoff_keV,
    )
    e_max = max(
        float(nuc.max_energy_keV),
        L.ANNIHILATION_KEV if sampler.positron_fraction > 0 else 0.0,
        float(np.max(sampler.beta_inverse_cdf_keV)) if sampler.beta_yield > 0 else 0.0,
        float(np.max(sampler.electron_line_energy_keV, initial=0.0)),
        float(np.max(sampler.photon_line_energy_keV, initial=0.0)),
    )
    tables = build_physics_tables(material_names, e_max, brems_cut_keV=options.brems_cut_keV)

    flat_activity = activity.ravel()
    src_index = np.flatnonzero(flat_activity > 0).astype(np.int64)
    src_prob, src_alias = build_alias_table(flat_activity[src_index].astype(np.float64))

    nz, ny, nx = density.shape
    rho_max = _max_density_per_material(voxels, len(material_names), nx, ny, *_SKIP_NONE)
    majorant = woodcock_majorant(tables, rho_max)

    p = tables.params
    p[L.P_E_CUT] = options.electron_cutoff_keV
    p[L.P_P_CUT] = options.photon_cutoff_keV
    p[L.P_STEP_FRAC] = options.step_fraction
    p[L.P_STEP_SHIFT] = np.log1p(-options.step_fraction) * p[L.P_INV_DLOG_E]
    p[L.P_STEP_MS] = options.step_lambda1
    p[L.P_RANGE_REJECTION] = 1.0 if options.range_rejection else 0.0
    p[L.P_BOUNDARY_STEPS] = 1.0 if options.boundary_steps else 0.0
    p[L.P_NX], p[L.P_NY], p[L.P_NZ] = nx, ny, nz
    p[L.P_DX], p[L.P_DY], p[L.P_DZ] = (s / 10.0 for s in spacing)
    p[L.P_INV_DX], p[L.P_INV_DY], p[L.P_INV_DZ] = (10.0 / s for s in spacing)
    set_body_box(p, voxels, (nz, ny, nx), tables, majorant)
    electrons = emissions in ("all", "electrons")
    photons = emissions in ("all", "photons")
    p[L.P_BETA_YIELD] = sampler.beta_yield
    p[L.P_EMIT_BETA_PARTICLES] = 1.0 if electrons else 0.0
    p[L.P_POSITRON_FRACTION] = sampler.positron_fraction if photons else 0.0
    p[L.P_ELINE_YIELD] = sampler.electron_line_yield if electrons else 0.0
    p[L.P_PLINE_YIELD] = sampler.photon_line_yield if photons else 0.0
    p[L.P_LOCAL_ENERGY] = sampler.local_energy_per_decay_keV if electrons else 0.0
    p[L.P_N_SOURCE] = len(src_index)
    p[L.P_TALLY_SCALE] = TALLY_UNITS_PER_KEV
    p[L.P_N_BETA_TABLE] = len(sampler.beta_inverse_cdf_keV)
    p[L.P_N_ELINES] = len(sampler.electron_line_energy_keV)
    p[L.P_N_PLINES] = len(sampler.photon_line_energy_keV)

    beta = np.ascontiguousarray(sampler.beta_inverse_cdf_keV, dtype=np.float64)
    if beta.size < 2:
        beta = np.zeros(2)
    return SimulationInputs(
        voxels=voxels,
        src_index=src_index,
        src_prob=np.ascontiguousarray(src_prob, dtype=np.float64),
        src_alias=np.ascontiguousarray(src_alias, dtype=np.int64),
        beta_icdf=beta,
        elines=_line_table(
            sampler.electron_line_energy_keV, sampler.electron_line_prob,
            sampler.electron_line_alias,
        ),  # fmt: skip
        plines=_line_table(
            sampler.photon_line_energy_keV, sampler.photon_line_prob, sampler.photon_line_alias
        ),
        majorant=majorant,
        tables=tables,
        params=p,
        shape=(nz, ny, nx),
        total_activity_MBq=total,
        emitted_energy_per_decay_keV=float(sampler.emitted_energy_per_decay_keV),
        material_names=tuple(material_names),
        nuclide=nuc.name,
        extra={"options": options, "emissions": emissions},
    )
