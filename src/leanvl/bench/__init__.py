"""Efficiency measurement for leanvl models (``leanvl bench``).

* :mod:`leanvl.bench.flops` -- FLOPs with attention counted explicitly from the shapes each
  call really has (dense, block-sparse, pruned), cross-checked against torch's FlopCounterMode;
* :mod:`leanvl.bench.params` -- parameter counts, total and by component;
* :mod:`leanvl.bench.timing` -- warm-up, repeated runs, median / p90, peak memory;
* :mod:`leanvl.bench.matmul_peak` -- this machine's measured matmul throughput;
* :mod:`leanvl.bench.workloads` -- what is measured for each model family;
* :mod:`leanvl.bench.runner` -- ``leanvl bench model`` records;
* :mod:`leanvl.bench.report` -- ``leanvl bench all``: docs/benchmarks.md and its plots.
"""

from leanvl.bench.flops import FlopCount, FlopCounter, count_flops
from leanvl.bench.matmul_peak import MatmulPeak, measure_matmul_peak
from leanvl.bench.params import ParamCount, count_parameters
from leanvl.bench.timing import Timing, peak_memory, time_callable

__all__ = [
    "FlopCount",
    "FlopCounter",
    "MatmulPeak",
    "ParamCount",
    "Timing",
    "count_flops",
    "count_parameters",
    "measure_matmul_peak",
    "peak_memory",
    "time_callable",
]
