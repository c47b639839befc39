"""ruvectord: a self-healing control daemon for PostgreSQL vector databases."""

import os as _os

__version__ = "0.1.0"

# One BLAS thread, unless the environment says otherwise; set before numpy or scipy load
# (integrity/mincut.py imports them). The daemon's matrices are small (lambda2's Laplacian, at most
# lambda2_dense_limit nodes dense) and each collection's computation already runs in a worker
# thread of its own: OpenBLAS's default, a thread per core that spins while it waits for work,
# made a 131-node eigvalsh cost 21 ms of CPU instead of 0.6 ms on a busy 2-core machine
# (bench/footprint.py, README "Footprint").
# What this import set (bench/footprint.py leaves it out of the daemon it starts).
ENV_DEFAULTS = {
    var: "1"
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    if var not in _os.environ
}
_os.environ.update(ENV_DEFAULTS)
