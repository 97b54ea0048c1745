"""The lab: the seed's change A/B'd on real kernels (issue 10).

``writepath lab`` builds Debian's linux-source-6.12 twice, as shipped and with the project's
adaptation of 665575cff098 (``data/filemap-move-prefaulting-6.12.patch``), boots each under
QEMU TCG with ``-icount`` and the project's TCG plugin (``data/wp_insns.c``), runs the static
benchmark (``data/bench.c``) inside, and reports guest kernel instructions per operation,
lkp-style, beside the cost model's prediction for the same loop. ``--semantics`` (and ``--full``)
boots both kernels once more with the host's Python inside and replays the catalogue's
single-task scenarios through the unchanged oracle (``semantics``, ``guest``, ``pyguest``).

Stages follow kunit.py: each has a request and a result dataclass and returns a
:class:`~writepath.lab.runner.StageResult` with a :class:`~writepath.lab.runner.Status`; the
commands go through one injectable :class:`~writepath.lab.runner.Runner`, which prints them
shell-quoted, keeps each step's output in a log under the work directory and enforces the
timeouts from the parent. Nothing here is imported by ``writepath.kernel``.
"""
