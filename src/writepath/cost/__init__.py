"""The cost model: a run's events priced by a CPU profile (issue 9).

A package beside ``kernel/``: it reaches the model only through ``run.run_scenario`` and the
event log, and nothing in ``kernel/`` imports it. Profiles (``profiles/*.toml``) and workloads
(``workloads/*.toml``) are data; every cost carries its unit and its source.

Modules by role: ``profile`` and ``workload`` read the data; ``price`` turns an event log into
quantities per cost category and prices them; ``calibrate`` fits a profile to the kernel test
robot's v6.13 measurements (never to a gain) and predicts each row, also with that row held out;
``sweep`` runs the write-size x source-state x design grid; ``render`` draws tables and plots
from the saved JSON only; ``microbench`` times this machine's real kernel; ``cli`` holds the
entry points of ``writepath bench WORKLOAD``/``--0day``, ``writepath sweep`` and ``writepath
profiles``. ``report.predicted_path_length_change`` gives the lab the model's change in kernel
instructions per operation.
"""
