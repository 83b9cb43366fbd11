"""Index constants of the arrays the transport kernels read.

The kernels take a handful of packed arrays instead of dozens of arguments; these integer
constants (compile-time constants for numba) say where each quantity lives.  The builder
(:mod:`mcdose.physics.tables`, :mod:`mcdose.transport.setup`) and the kernels import them
from here, so the two sides cannot drift apart.
"""

# --- mat_tab[material, quantity, energy_index]: per-material tables on the log-energy grid
MU_TOTAL = 0  # photon mass attenuation coefficient incl. coherent, cm²/g
MU_PHOTO = 1  # photoelectric, cm²/g
MU_INCOH = 2  # Compton (incoherent), cm²/g
MU_COH = 3  # Rayleigh (coherent), cm²/g
E_STOP = 4  # restricted electron stopping power used for continuous loss, keV cm²/g
E_RANGE = 5  # CSDA range computed from E_STOP, g/cm²
E_LAMBDA1 = 6  # first transport mean free path, g/cm²
E_BREMS = 7  # bremsstrahlung photons above the cut per unit mass thickness, cm²/g
E_KAPPA = 8  # Q(E) = ∫ dE'/(S_r λ₁): transport mean free paths travelled slowing down to E
N_QUANTITIES = 9

# --- params[]: float64 scalars shared by all kernels
P_LOG_E_MIN = 0  # ln(E_min / keV) of the energy grid
P_INV_DLOG_E = 1  # 1 / Δln E
P_N_E = 2  # number of energy grid points
P_KN_LOG_E_MIN = 3  # Compton inverse-CDF table energy grid
P_KN_INV_DLOG_E = 4
P_KN_N_E = 5
P_RAY_LOG_E_MIN = 6  # Rayleigh inverse-CDF table energy grid
P_RAY_INV_DLOG_E = 7
P_RAY_N_E = 8
P_MS_LOG_KAPPA_MIN = 9  # multiple-scattering screening table A(κ), grid in ln κ
P_MS_INV_DLOG_KAPPA = 10
P_MS_N_KAPPA = 11
P_MS_KAPPA_ISOTROPIC = 12  # κ (transport mean free paths) above which cos θ is uniform
P_E_CUT = 13  # electron transport cutoff, keV
P_P_CUT = 14  # photon transport cutoff, keV
P_BREMS_K_CUT = 15  # lowest bremsstrahlung photon energy produced explicitly, keV
P_STEP_FRAC = 16  # maximum fractional energy loss per electron step
P_STEP_MS = 17  # maximum electron step in units of lambda1
P_RANGE_REJECTION = 18  # 1.0: deposit electrons that cannot leave their voxel
# geometry (cm) and source scalars
P_NX = 19
P_NY = 20
P_NZ = 21
P_DX = 22  # voxel size along x, cm
P_DY = 23
P_DZ = 24
P_BETA_YIELD = 25  # beta particles per decay
P_ELINE_YIELD = 26  # line electrons per decay (above the cutoff)
P_PLINE_YIELD = 27  # line photons per decay (above the cutoff)
P_LOCAL_ENERGY = 28  # energy deposited at the decay site, keV per decay
P_N_SOURCE = 29  # number of source voxels
P_TALLY_SCALE = 30  # fixed-point tally units per keV
P_N_BETA_TABLE = 31  # length of the beta inverse-CDF table
P_N_ELINES = 32
P_N_PLINES = 33
P_N_R = 34  # length of each material's inverse range table
P_POSITRON_FRACTION = 35  # fraction of betas that are positrons (each adds 2 × 511 keV photons)
P_EMIT_BETA_PARTICLES = 36  # 1.0: transport the beta particles themselves (0 for photons only)
P_BOUNDARY_STEPS = 37  # 1.0: inside a voxel, electron steps may grow to the nearest face
P_STEP_SHIFT = 38  # ln(1 − step_fraction) / Δln E: energy-grid offset of E·(1 − step_fraction)
P_INV_DX = 39  # 1 / voxel size along x, 1/cm (multiplications instead of divisions)
P_INV_DY = 40
P_INV_DZ = 41
# the body box: photons outside it fly against a smaller majorant (see photon_flight)
P_BOX_X0 = 42  # lower corner of the box holding every voxel denser than air, cm
P_BOX_Y0 = 43
P_BOX_Z0 = 44
P_BOX_X1 = 45  # upper corner, cm
P_BOX_Y1 = 46
P_BOX_Z1 = 47
P_OUTSIDE_SCALE = 48  # majorant outside the box / majorant inside (≥ 1.0: no box)
P_INV_OUTSIDE_SCALE = 49  # its reciprocal
N_PARAMS = 50

#: Photon energy of positron annihilation at rest, keV (mₑc², CODATA 2018).
ANNIHILATION_KEV = 510.99895

# --- inv_range[material, row, k]: functions of the residual range on a grid uniform in ln R
IR_ENERGY = 0  # electron energy with that CSDA range, keV
IR_KAPPA = 1  # Q(E(R)): transport mean free paths left to travel, see E_KAPPA

# --- voxels[voxel, column]: the map the kernels read (one cache line per voxel visit)
V_DENSITY = 0  # mass density, g/cm³
V_MATERIAL = 1  # material index (a small integer stored as float32)

# --- range_grid[material, :]
RG_LOG_R_MIN = 0  # ln(R_min / (g/cm²))
RG_INV_DLOG_R = 1

# --- particle banks: bank_f[column, slot] float32 (structure of arrays) ...
S_TYPE = 0  # 0 photon, 1 electron
S_E = 1  # kinetic energy, keV
S_X = 2  # position, cm (grid frame: 0 at the outer corner of voxel 0)
S_Y = 3
S_Z = 4
S_U = 5  # direction cosines along x, y, z
S_V = 6
S_W = 7
S_BREMS = 8  # electrons: bremsstrahlung mean free paths left (< 0: not yet sampled)
STACK_COLUMNS = 9
# ... and bank_i[column, slot] int64
B_HISTORY = 0  # decay (history) index the particle belongs to
B_STREAM = 1  # its random-number stream (mcdose.physics.rng.child_stream)
B_SPAWN = 2  # key naming its next child (mcdose.physics.rng.next_child); = B_STREAM at birth
B_RNG_WORDS = 3  # words already drawn from its stream (0 at birth; > 0 when resumed)
B_VOXEL = 4  # electrons: flat index of the voxel it is in (−1: locate from the position)
BANK_INT_COLUMNS = 5
#: Work (photon flights, electron steps) a particle does in one GPU pass before it is
#: suspended into the next pass's bank: caps how long one lane can hold up its warp.
PASS_WORK_LIMIT = 4
#: The CPU engine never suspends a particle.
NO_WORK_LIMIT = 2**62
#: Slots of the CPU engine's per-thread particle stack (a bank used last-in first-out).
STACK_SIZE = 48

PHOTON = 0.0
ELECTRON = 1.0

# --- lines[row, i] for electron and photon line tables
L_ENERGY = 0
L_PROB = 1
L_ALIAS = 2

# --- counters[]: per-run diagnostic counters (uint64, fixed-point energies in tally units)
C_ESCAPED = 0  # energy leaving the grid
C_EMITTED = 1  # energy emitted (sampled), fixed point
C_STACK_OVERFLOW = 2  # energy deposited locally because the secondary stack was full
C_BREMS = 3  # energy handed to bremsstrahlung photons
N_COUNTERS = 4
