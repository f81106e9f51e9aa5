"""The package's commands, one module each, with ``main(argv=None) -> int`` (the exit status).

Installed as console scripts (``pyproject.toml``), runnable as ``python -m hf_primaldual.cli.<module>``, and behind
the thin ``scripts/<module>.py`` of a checkout:

==================================== ======================================= ==================================
console script                       module                                  checkout script
==================================== ======================================= ==================================
``hf-primaldual-train-timeseries``   `hf_primaldual.cli.train_timeseries`    ``scripts/train_timeseries.py``
``hf-primaldual-train-image``        `hf_primaldual.cli.train_image`         ``scripts/train_image.py``
``hf-primaldual-evaluate``           `hf_primaldual.cli.evaluate_checkpoint` ``scripts/evaluate_checkpoint.py``
``hf-primaldual-push``               `hf_primaldual.cli.push_to_hub`         ``scripts/push_to_hub.py``
``hf-primaldual-convert``            `hf_primaldual.conversion`              ``scripts/convert_attention.py``
==================================== ======================================= ==================================
"""
